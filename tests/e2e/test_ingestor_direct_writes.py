"""The ingestor's direct RESP write path against a real redis-server: same results as a pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import RedisServer
from tests.rawread import frames_of, raw_frames
from tickpipe.common.contract import RAW_FIELDS, RAW_FRAMES, RAW_PACK_MAX
from tickpipe.common.raw_resp import channel_values
from tickpipe.common.redis_link import RedisLink, direct_pool
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.writer import _send_direct

pytestmark = pytest.mark.e2e


def test_direct_writes_append_in_order_and_return_only_refused_entries(
    redis_server: RedisServer,
) -> None:
    async def main() -> tuple[list[int], list[dict[bytes, bytes]], bool]:
        client = aioredis.Redis.from_url(redis_server.url)
        link = RedisLink(client)
        assert link.direct
        await client.set("not-a-stream", "x")
        batch = [
            ("tp:{binance:0}:raw", RawFrame("ws", "binance", "c1", n, 10 + n, f'{{"n":{n}}}'))
            for n in range(1, 2001)
        ]
        batch.insert(700, ("not-a-stream", RawFrame("ws", "binance", "c1", 0, 0, "{}")))
        failed = await _send_direct(link.channel(), batch)
        frames = await raw_frames(client, "tp:{binance:0}:raw")
        # the connection goes back to the pool in a clean state
        still_ok = bool(await client.ping())
        await client.aclose()
        return [batch.index(item) for item, _ in failed], [f for _, f in frames], still_ok

    failed_at, fields, still_ok = asyncio.run(main())
    assert failed_at == [700]
    assert [int(f[b"seq"]) for f in fields] == list(range(1, 2001))
    assert fields[0][b"data"] == b'{"n":1}' and still_ok


def test_only_single_server_clients_get_the_direct_path() -> None:
    import fakeredis

    assert direct_pool(fakeredis.FakeAsyncRedis()) is not None  # a redis-py pool: scripts run
    assert direct_pool(object()) is None  # e.g. a cluster client: redis-py's commands


def test_script_writes_store_exactly_the_frames_fields_per_stream_in_order(
    redis_server: RedisServer,
) -> None:
    streams = ["tp:{binance:0}:raw", "tp:{binance:1}:raw"]
    batch: list[tuple[str, RawFrame]] = []
    for n in range(1, 601):
        conn = "c1" if n < 300 else "c2"  # the fields that stay the same change mid-batch
        kind, channel = ("marker", "") if n % 97 == 0 else ("ws", "market")
        data = f'{{"n":{n},"s":"é"}}'
        batch.append(
            (streams[n % 2], RawFrame(kind, "binance", conn, n, 10**18 + n, data, channel))
        )

    async def main() -> tuple[list[tuple[str, RawFrame]], dict[str, list[tuple[Any, Any]]]]:
        client = aioredis.Redis.from_url(redis_server.url)
        failed = await _send_direct(RedisLink(client).channel(), batch)
        stored = {s: list(await client.xrange(s)) for s in streams}
        await client.aclose()
        return [item for item, _ in failed], stored

    failed, stored = asyncio.run(main())
    assert failed == []
    for stream in streams:
        frames = [frame for s, frame in batch if s == stream]
        expected = [
            {k.encode(): v.encode() for k, v in frame.to_fields().items()} for frame in frames
        ]
        assert [f for _, f in frames_of(stored[stream])] == expected
        # each entry in the packed layout, field by field and in order
        assert [list(f.items()) for _, f in stored[stream]] == packed_entries(frames)


def packed_entries(frames: list[RawFrame]) -> list[list[tuple[bytes, bytes]]]:
    """The entries :data:`APPEND_SCRIPT` writes for one stream's ``frames`` (short data):
    consecutive WebSocket frames of one connection's channel share an entry, up to
    :data:`RAW_PACK_MAX`; any other frame is an entry of its own."""
    groups: list[list[RawFrame]] = []
    for frame in frames:
        last = groups[-1] if groups else None
        if (
            last is not None
            and frame.kind == "ws"
            and channel_values(last[0]) == channel_values(frame)
            and len(last) < RAW_PACK_MAX
        ):
            last.append(frame)
        else:
            groups.append([frame])
    out = []
    for group in groups:
        first = group[0].to_fields()
        fields = [(name, first[name]) for name in RAW_FIELDS]
        if len(group) > 1:
            fields.append((RAW_FRAMES, str(len(group))))
            for k, frame in enumerate(group[1:], 1):
                own = frame.to_fields()
                fields += [(f"{name}.{k}", own[name]) for name in ("seq", "ts_recv", "data")]
        out.append([(k.encode(), v.encode()) for k, v in fields])
    return out


def test_entries_redis_refuses_for_memory_come_back_to_be_retried(
    redis_server: RedisServer,
) -> None:
    async def main() -> tuple[int, str, int]:
        client = aioredis.Redis.from_url(redis_server.url)
        await client.config_set("maxmemory", "1")  # every write is now refused with OOM
        batch = [
            ("tp:{binance:0}:raw", RawFrame("ws", "binance", "c1", n, n, "{}")) for n in range(5)
        ]
        failed = await _send_direct(RedisLink(client).channel(), batch)
        await client.config_set("maxmemory", "0")
        length = await client.xlen("tp:{binance:0}:raw")
        await client.aclose()
        error = failed[0][1] if failed else None
        return len(failed), f"{type(error).__name__}: {error}", length

    refused, error, length = asyncio.run(main())
    assert (refused, length) == (5, 0)
    assert "OutOfMemoryError" in error and "maxmemory" in error  # the server's OOM, typed
