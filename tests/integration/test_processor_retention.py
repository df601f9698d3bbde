"""The processor trims its streams by the retention policy, never past unread entries."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import orjson

from tests.unit.test_processor_books import hftbacktest
from tests.waits import until
from tickpipe.common.names import Partition
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.processor.shell import run

P = Partition("binance", 0)
KEEP = 50


def _entry_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.decode().partition("-")
    return int(ms), int(seq)


def test_streams_are_trimmed_but_unread_entries_are_kept_with_an_alarm() -> None:
    frames = [f for _, f in hftbacktest("btcusdt_20240808.gz") if '@trade"' in f.data][:300]

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = Settings(
            namespace="pr",
            symbols=("BTCUSDT",),
            instance="m1",
            batch_size=100,
            health_interval_s=0.05,
            retention_maxlen=(("*", KEEP),),
        )
        keys = settings.keys
        # A slow reader of trades that has read nothing yet.
        await redis.xgroup_create(keys.trades(P), "slow", id="0", mkstream=True)
        async with redis.pipeline(transaction=False) as pipe:
            for frame in frames:
                pipe.xadd(keys.raw(P), frame.to_fields())
            await pipe.execute()
        stop = asyncio.Event()
        task = asyncio.create_task(
            run(settings, stop, redis=redis, clock=lambda: 1, retention_s=0.05)
        )

        async def health() -> dict[str, Any]:
            raw: Any = await redis.get(keys.health("processor", "m1"))
            return orjson.loads(raw) if raw else {}

        async def raw_trimmed() -> bool:
            return await redis.xlen(keys.raw(P)) == KEEP

        async def alarmed() -> bool:
            return keys.trades(P) in (await health()).get("retention_alarms", [])

        await until(raw_trimmed)  # read and acknowledged by the processor group
        await until(alarmed)
        assert await redis.xlen(keys.trades(P)) == 300  # nothing read by "slow": all kept
        assert (await health())["retention_blocked"] > 0

        # The slow reader catches up to entry 200: entries up to it may go, not the rest.
        entries: Any = await redis.xrange(keys.trades(P), count=200)
        await redis.xreadgroup("slow", "c", {keys.trades(P): ">"}, count=200)
        await redis.xack(keys.trades(P), "slow", *[eid for eid, _ in entries])

        async def trimmed_to_read_point() -> bool:
            return await redis.xlen(keys.trades(P)) == 100

        await until(trimmed_to_read_point)
        first: Any = await redis.xrange(keys.trades(P), count=1)
        assert _entry_id(first[0][0]) > _entry_id(entries[-1][0])  # ids compare as numbers

        await redis.xreadgroup("slow", "c", {keys.trades(P): ">"})
        rest: Any = await redis.xrange(keys.trades(P))
        await redis.xack(keys.trades(P), "slow", *[eid for eid, _ in rest])

        async def cleared() -> bool:
            return not await alarmed() and await redis.xlen(keys.trades(P)) == KEEP

        await until(cleared)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())


def test_raw_is_not_trimmed_past_unacknowledged_entries() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = Settings(namespace="pr2", symbols=("BTCUSDT",), instance="m1")
        keys = settings.keys
        for n in range(20):
            await redis.xadd(
                keys.raw(P), RawFrame("marker", "binance", "c", n, 1, "{}").to_fields()
            )
        from tickpipe.processor.lanes import PartitionLane
        from tickpipe.processor.trimmer import Retention, trim_streams

        lane = PartitionLane(settings, P)
        retention = Retention()
        raw_only = [r for r in lane.retained if r[0] == "raw"]
        await trim_streams(redis, raw_only, (("*", 5),), retention)
        assert await redis.xlen(keys.raw(P)) == 20  # no processor group yet
        assert "processor" in retention.alarms[keys.raw(P)]
        await redis.xgroup_create(keys.raw(P), "processor", id="0")
        await redis.xreadgroup("processor", "m1", {keys.raw(P): ">"}, count=10)  # 10 pending
        await trim_streams(redis, raw_only, (("*", 5),), retention)
        assert await redis.xlen(keys.raw(P)) == 20  # delivered but not acknowledged: kept
        ids: Any = [eid for eid, _ in await redis.xrange(keys.raw(P), count=8)]
        await redis.xack(keys.raw(P), "processor", *ids)
        await trim_streams(redis, raw_only, (("*", 5),), retention)
        assert await redis.xlen(keys.raw(P)) == 12 and keys.raw(P) in retention.alarms
        assert retention.trimmed == 8

    asyncio.run(scenario())


def _counting(redis: Any) -> list[str]:
    """Record the commands that read entries (XRANGE from the client, EVAL of the lookup)."""
    calls: list[str] = []
    for name in ("xrange", "eval"):
        real = getattr(redis, name)

        async def counted(*args: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
            calls.append(_name)
            return await _real(*args, **kw)

        setattr(redis, name, counted)
    return calls


def test_a_growing_stream_is_trimmed_from_marks_without_reading_it() -> None:
    from tickpipe.processor.trimmer import Retention, trim_streams

    async def scenario() -> tuple[list[int], list[str], int, int]:
        redis = fakeredis.FakeAsyncRedis()
        calls = _counting(redis)
        retention = Retention()
        lengths = []
        for round_ in range(12):
            for n in range(30):  # 30 appends per trim round, keep 50
                await redis.xadd("s", {"n": str(round_ * 30 + n)})
            await trim_streams(redis, [("trades", "s", ())], (("*", 50),), retention)
            lengths.append(int(await redis.xlen("s")))
        first: Any = await fakeredis.FakeAsyncRedis.xrange(redis, "s", count=1)
        return lengths, calls, retention.lookups, int(first[0][1][b"n"])

    lengths, calls, lookups, first_n = asyncio.run(scenario())
    # The second round has no usable mark, and the one after the first entry is too far
    # (29 entries > half the cap): the id is looked up, inside Redis.
    assert lengths[:2] == [30, 50]
    assert calls == ["eval"] and lookups == 1
    assert all(50 <= n <= 80 for n in lengths[2:])  # maxlen plus at most one round's appends
    assert first_n == 360 - lengths[-1]  # the oldest entries went, in order


def test_uneven_rounds_wait_for_the_next_mark_instead_of_reading() -> None:
    """Appends vary from round to round, so the next mark is often just short of the cut."""
    from tickpipe.processor.trimmer import Retention, trim_streams

    appends = [37, 23, 41, 19, 30, 44, 21, 35, 26, 39, 18, 42, 33, 22, 40, 27] * 3

    async def scenario() -> tuple[list[int], int, list[str]]:
        redis = fakeredis.FakeAsyncRedis()
        retention = Retention()
        lengths = []
        for count in appends:
            for n in range(count):
                await redis.xadd("s", {"n": str(n)})
            calls = _counting(redis)
            await trim_streams(redis, [("trades", "s", ())], (("*", 200),), retention)
            lengths.append(int(await redis.xlen("s")))
        return lengths, retention.lookups, calls

    lengths, lookups, calls = asyncio.run(scenario())
    assert lookups == 0 and calls == []  # every trim came from a mark
    full = lengths[next(n for n, v in enumerate(lengths) if v >= 200) :]
    assert all(200 <= n <= 300 for n in full)  # never under the cap, at most half over it
    assert max(full) > 200  # some rounds waited for their mark


def test_a_stream_filling_over_many_rounds_keeps_marks_spread_over_its_history() -> None:
    from tickpipe.processor.trimmer import MAX_MARKS, Retention, trim_streams

    rounds = 4 * MAX_MARKS

    async def scenario() -> tuple[int, int, int]:
        redis = fakeredis.FakeAsyncRedis()
        retention = Retention()
        for n in range(rounds + 4):  # one entry per round: the cap is reached after many
            await redis.xadd("s", {"n": str(n)})
            await trim_streams(redis, [("trades", "s", ())], (("*", rounds),), retention)
        return int(await redis.xlen("s")), retention.lookups, len(retention.marks["s"])

    length, lookups, marks = asyncio.run(scenario())
    assert marks <= MAX_MARKS
    assert lookups == 0  # an old mark was still there when the stream passed its cap
    assert rounds <= length <= rounds + rounds // MAX_MARKS * 3


def test_the_lookup_finds_the_nth_id_inside_redis() -> None:
    from tickpipe.processor.trimmer import nth_id

    async def scenario() -> tuple[list[str | None], list[str]]:
        redis = fakeredis.FakeAsyncRedis()
        ids = [(await redis.xadd("s", {"n": str(n)})).decode() for n in range(5)]
        found = [await nth_id(redis, "s", n) for n in (1, 3, 5, 6)]
        return [*found, await nth_id(redis, "missing", 1)], ids

    found, ids = asyncio.run(scenario())
    assert found == [ids[0], ids[2], ids[4], None, None]


def test_marks_of_a_stream_under_its_cap_stay_bounded() -> None:
    from tickpipe.processor.trimmer import MAX_MARKS, Retention, trim_streams

    async def scenario() -> int:
        redis = fakeredis.FakeAsyncRedis()
        retention = Retention()
        for n in range(3 * MAX_MARKS):
            await redis.xadd("s", {"n": str(n)})
            await trim_streams(redis, [("trades", "s", ())], (("*", 10_000),), retention)
        assert await redis.xlen("s") == 3 * MAX_MARKS  # under the cap: nothing trimmed
        return len(retention.marks["s"])

    assert asyncio.run(scenario()) <= MAX_MARKS
