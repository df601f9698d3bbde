"""The direct-Redis seam against a real redis-server: a link cut mid-batch, an ACL without EVAL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import RedisServer
from tests.rawread import raw_frames_sync
from tickpipe.common.errors import TickpipeError
from tickpipe.common.names import Keys
from tickpipe.common.redis_link import RedisLink, Script, ScriptsRefused
from tickpipe.common.schema import OrderIntent, RawFrame, decode_fields
from tickpipe.ingestor.writer import BatchWriter, IngestorStats, WriteQueue, _send_direct
from tickpipe.trader.intents import IntentRecorder

pytestmark = pytest.mark.e2e


class CuttingProxy:
    """Forward TCP to Redis; the first connection is closed after ``cut_after`` request bytes."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.port = port
        self.cut_after = cut_after
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        budget = self.cut_after if self.cuts == 0 else None
        if budget is not None:
            self.cuts += 1

        async def upstream() -> None:
            nonlocal budget
            while data := await reader.read(65536):
                if budget is not None and len(data) >= budget:
                    up_writer.write(data[:budget])  # Redis gets a cut-off request...
                    await up_writer.drain()
                    break  # ... and the client's link drops mid-batch
                if budget is not None:
                    budget -= len(data)
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        down = asyncio.create_task(downstream())
        try:
            await upstream()
        finally:
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await down
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()

    async def close(self) -> None:
        """Stop accepting and wait until every forwarded connection is closed."""
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()


def test_a_link_cut_mid_batch_loses_and_doubles_nothing(redis_server: RedisServer) -> None:
    """The ingestor's batch through the seam, cut off mid-write: every frame once, in order."""
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    streams = ["tp:{binance:0}:raw", "tp:{binance:1}:raw"]
    count = 3000

    async def main() -> tuple[dict[str, list[int]], IngestorStats]:
        proxy = CuttingProxy(redis_server.port, cut_after=rng.randrange(20_000, 200_000))
        port = await proxy.start()
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        queue: WriteQueue = asyncio.Queue()
        stats = IngestorStats()
        writer = BatchWriter(client, queue, stats, batch_max=count * 2)
        for n in range(1, count + 1):
            stream = streams[n % 2]
            data = f'{{"n":{n},"pad":"{"x" * rng.randrange(10, 200)}"}}'
            await queue.put((stream, RawFrame("ws", "binance", "c1", n, n, data, "market")))
        await queue.put(None)
        await asyncio.wait_for(writer.run(), 60)
        plain = redis_server.client()
        found = {
            s: [int(f[b"seq"]) for _, f in raw_frames_sync(plain, s)]  # every frame, in order
            for s in streams
        }
        plain.close()
        await client.aclose()
        await proxy.close()
        assert proxy.cuts == 1
        return found, stats

    found, stats = asyncio.run(main())
    assert found[streams[0]] == list(range(2, count + 1, 2))
    assert found[streams[1]] == list(range(1, count + 1, 2))
    assert stats.redis_outages == 1 and stats.redis_up


def _acl_user(server: RedisServer) -> str:
    admin = server.client()
    admin.execute_command(
        "ACL", "SETUSER", "noeval", "on", ">pw", "~*", "&*", "+@all", "-eval", "-evalsha"
    )
    admin.close()
    return f"redis://noeval:pw@127.0.0.1:{server.port}/0"


def test_an_acl_without_eval_switches_the_seam_to_transactions(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = _acl_user(redis_server)
    keys = Keys("acl")
    intent = OrderIntent("c1", "s1", "binance", "BTCUSDT", "buy", "MARKET", "1", None, 1, 2)

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        link = RedisLink(client, role="trader")
        with pytest.raises(ScriptsRefused) as refused:
            await link.call_script(Script("return 1"), [], [], doing="testing")
        assert isinstance(refused.value, TickpipeError)
        assert not link.scripted and link.scripts_refused == 1
        await link.close()
        # The trader's intent record, through the same seam: recorded once by WATCH/MULTI.
        await client.set("acl:lease", "token")
        recorder = IntentRecorder(client, keys, "binance", token="token", lease_key="acl:lease")
        signed: list[int] = []
        assert await recorder.record(intent, meanwhile=lambda: signed.append(1)) is None
        assert not recorder.link.scripted and signed == [1]
        assert await recorder.record(intent) == intent.to_fields()  # found, never twice
        entries = [decode_fields(f) for _, f in await client.xrange(keys.orders("binance"))]
        assert entries == [{**intent.to_fields(), "event": "intent"}]
        await recorder.close()
        await client.aclose()

    with caplog.at_level(logging.WARNING, logger="tickpipe.redis"):
        asyncio.run(main())
    assert sum("refused a script" in r.getMessage() for r in caplog.records) == 2


def test_an_ingestor_without_eval_appends_every_frame_once_by_multi_exec(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL without ``+eval`` (an old ACL file): the writer's batches still land, atomically."""
    url = _acl_user(redis_server)
    streams = ["tp:{binance:0}:raw", "tp:{binance:1}:raw"]
    frames = [
        (streams[n % 2], RawFrame("ws", "binance", "c1", n, 10 + n, f'{{"n":{n},"s":"é"}}', "m"))
        for n in range(1, 1201)
    ]

    async def main() -> tuple[IngestorStats, int, list[tuple[int, str]]]:
        client = aioredis.Redis.from_url(url)
        await client.set("not-a-stream", "x")
        queue: WriteQueue = asyncio.Queue()
        stats = IngestorStats()
        writer = BatchWriter(client, queue, stats, batch_max=500)
        for item in frames:
            await queue.put(item)
        await queue.put(None)
        await asyncio.wait_for(writer.run(), 60)
        # One refused entry in a batch is reported alone; its stream's others are appended.
        odd = [("not-a-stream", RawFrame("ws", "binance", "c2", 1, 1, "{}", "m")), frames[0]]
        channel = RedisLink(client).channel()
        channel.link.scripted = False
        failed = await _send_direct(channel, odd)
        await client.aclose()
        return stats, writer.link.scripts_refused, [(odd.index(i), str(e)) for i, e in failed]

    with caplog.at_level(logging.WARNING, logger="tickpipe.redis"):
        stats, refused, failed = asyncio.run(main())
    plain = redis_server.client()
    for k, stream in enumerate(streams):
        entries = plain.xrange(stream)  # type: ignore[union-attr]
        want = [f.to_fields() for s, f in frames if s == stream]
        if k == 1:
            want.append(frames[0][1].to_fields())  # written again by the odd batch above
        assert [decode_fields(f) for _, f in entries] == want
    plain.close()
    assert refused == 1 and stats.redis_outages == 0
    assert [i for i, _ in failed] == [0] and "WRONGTYPE" in failed[0][1]
    assert sum("refused a script" in r.getMessage() for r in caplog.records) == 1
