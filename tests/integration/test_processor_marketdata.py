"""The processor shell writes quotes, book tops, gap records and snapshot requests (fakeredis)."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import orjson

from tests.stages import stage_running
from tests.unit.test_processor_books import hftbacktest
from tickpipe.common.names import Partition
from tickpipe.common.schema import Quote, RawFrame, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.processor.records import BookTop
from tickpipe.processor.shell import run

P = Partition("binance", 0)


def make_settings(instance: str) -> Settings:
    return Settings(
        namespace="pm",
        symbols=("BTCUSDT",),
        instance=instance,
        batch_size=200,
        health_interval_s=0.05,
    )


async def read(redis: Any, key: str) -> list[dict[str, str]]:
    return [decode_fields(fields) for _, fields in await redis.xrange(key)]


async def wait_until(redis: Any, key: str, count: int, deadline_s: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while await redis.xlen(key) < count:
        assert loop.time() < end, f"{key} did not reach {count} entries"
        await asyncio.sleep(0.01)


async def write(redis: Any, settings: Settings, frames: list[RawFrame]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for frame in frames:
            pipe.xadd(settings.keys.raw(P), frame.to_fields())
        await pipe.execute()


async def run_until(settings: Settings, redis: Any, key: str, count: int) -> None:
    async with stage_running(run, settings, redis=redis, clock=lambda: 42, lease_ms=10_000):
        await wait_until(redis, key, count)


def test_quotes_books_and_snapshot_requests_reach_their_streams() -> None:
    frames = [f for _, f in hftbacktest("btcusdt_20240808.gz")[:3000]]
    quotes = sum(1 for f in frames if "@bookTicker" in f.data)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings("m1")
        keys = settings.keys
        await write(redis, settings, frames)
        await run_until(settings, redis, keys.quotes(P), quotes)
        got = [Quote.from_fields(f) for f in await read(redis, keys.quotes(P))]
        assert len(got) == quotes and got[0].update_id == "50093239212"
        ids = [int(q.update_id) for q in got]
        assert ids == sorted(set(ids))
        tops = [BookTop.from_fields(f) for f in await read(redis, keys.book(P))]
        assert [t.status for t in tops[:2]] == ["stale", "live"]
        assert tops[1].update_id == "50093239224"
        control = await read(redis, keys.control(P))
        assert [(c["action"], c["symbol"]) for c in control] == [("snapshot", "BTCUSDT")]
        assert await redis.xlen(keys.gaps(P)) == 0

        # A takeover: the new owner has no book, asks again, and writes no top until it comes.
        more = [f for _, f in hftbacktest("btcusdt_20240808.gz")[3000:3400]]
        await write(redis, settings, more)
        before = await redis.xlen(keys.book(P))
        await run_until(make_settings("m2"), redis, keys.control(P), 2)
        control = await read(redis, keys.control(P))
        assert control[-1]["symbol"] == "BTCUSDT" and control[-1]["reason"] == "no book"
        tops = [BookTop.from_fields(f) for f in await read(redis, keys.book(P))]
        assert len(tops) == before + 1 and tops[-1].status == "stale"  # same MULTI as the ask
        # The ingestor answers with a snapshot: the book comes back.
        last_u = max(orjson.loads(f.data)["data"]["u"] for f in more if "@depth" in f.data)
        book = {"lastUpdateId": last_u, "bids": [["1.0", "1.0"]], "asks": [["2.0", "1.0"]]}
        await write(redis, settings, [rest_snapshot(book)])
        diff = (
            '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161600000,'
            f'"s":"BTCUSDT","U":{last_u + 1},"u":{last_u + 2},"b":[["1.5","3"]],"a":[]}}}}'
        )
        recv = 1_723_161_600_100_000_000  # 100 ms after the diff's event time
        await write(redis, settings, [RawFrame("ws", "binance", "c9", 1, recv, diff)])
        await run_until(make_settings("m2"), redis, keys.book(P), before + 3)
        last = BookTop.from_fields((await read(redis, keys.book(P)))[-1])
        assert (last.update_id, last.bid_price, last.ask_price) == (str(last_u + 2), "1.5", "2.0")

    asyncio.run(scenario())


def rest_snapshot(body: dict[str, Any]) -> RawFrame:
    from tests.unit.test_processor_books import rest_frame

    return rest_frame(1, 5, "BTCUSDT", body)
