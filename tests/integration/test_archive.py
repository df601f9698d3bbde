"""The archive copies streams into partitioned Parquet, each entry once, and resumes exactly."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.exceptions as redis_errors

from tests.realdata import BTCUSDT_CAPTURE
from tests.waits import until
from tickpipe.archive.files import INTENTS, read_rows
from tickpipe.archive.shell import ArchiveStats, run
from tickpipe.common.names import GROUP_ARCHIVE, Partition, archive_watermark
from tickpipe.common.settings import Settings
from tickpipe.processor.lanes import PartitionLane
from tickpipe.processor.trimmer import Retention, trim_streams
from tickpipe.tools.recordings import is_archive, read_recordings
from tickpipe.tools.replay import replay_file

P = Partition("binance", 0)
DAY_NS = 1_733_300_000_000_000_000  # 2024-12-04


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    extra.setdefault("batch_size", 40)
    extra.setdefault("symbols", ("BTCUSDT", "ETHUSDT"))
    return Settings(
        namespace="ar", instance="a1",
        health_interval_s=0.05, archive=True, archive_dir=str(tmp_path / "archive"),
        archive_roll_s=3600.0, **extra,
    )  # fmt: skip


def _trade(n: int, symbol: str) -> dict[str, str]:
    return {
        "v": "1", "symbol": symbol, "trade_id": str(n), "price": f"{100 + n}.5", "qty": "0.1",
        "side": "buy", "ts_event": str(DAY_NS + n * 1_000_000_000), "ts_recv": str(DAY_NS + n),
    }  # fmt: skip


def _raw(n: int, symbol: str) -> dict[str, str]:
    data = f'{{"stream":"{symbol.lower()}@trade","data":{{"s":"{symbol}","t":{n}}}}}'
    return {"kind": "ws", "venue": "binance", "conn": "c1", "seq": str(n),
            "ts_recv": str(DAY_NS + n * 1_000_000), "channel": "market", "data": data}  # fmt: skip


async def _fill(redis: Any, settings: Settings, count: int, start: int = 0) -> dict[str, list]:
    keys = settings.keys
    added: dict[str, list] = {keys.trades(P): [], keys.raw(P): []}
    for n in range(start, start + count):
        symbol = ("BTCUSDT", "ETHUSDT")[n % 2]
        for stream, fields in ((keys.trades(P), _trade(n, symbol)), (keys.raw(P), _raw(n, symbol))):
            entry_id = await redis.xadd(stream, fields)
            added[stream].append((entry_id.decode(), fields))
    return added


def _archived(root: Path, kind: str) -> list[dict[str, str]]:
    return read_rows(root, "binance", kind, None, None, None)


def _expect_once(rows: list[dict[str, str]], added: list[tuple[str, dict[str, str]]]) -> None:
    ids = [r["_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an entry was archived twice"
    assert ids == [i for i, _ in added], "entries missing or out of order"
    for row, (_, fields) in zip(rows, added, strict=True):
        assert {k: v for k, v in row.items() if not k.startswith("_")} == fields


def test_every_entry_lands_once_in_its_partition_directory(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    root = tmp_path / "archive"

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        added = await _fill(redis, settings, 101)
        stop = asyncio.Event()
        stats = ArchiveStats()
        task = asyncio.create_task(run(settings, stop, redis=redis, block_ms=20, stats=stats))

        async def all_held() -> bool:
            return stats.open_entries == 202

        await until(all_held, 20, "every group to hold its segment")
        stop.set()  # a stop writes the open segments
        await task
        keys = settings.keys
        for stream in added:
            assert (await redis.get(archive_watermark(stream))).decode() == added[stream][-1][0]
            assert (await redis.xpending(stream, GROUP_ARCHIVE))["pending"] == 0
        _expect_once(_archived(root, "trades"), added[keys.trades(P)])
        _expect_once(_archived(root, "raw"), added[keys.raw(P)])
        btc = read_rows(root, "binance", "trades", "BTCUSDT", None, None)
        assert {r["symbol"] for r in btc} == {"BTCUSDT"} and len(btc) == 51
        assert (root / "venue=binance/kind=raw/symbol=ETHUSDT/date=2024-12-04").is_dir()
        assert not list((root / INTENTS).iterdir())

    asyncio.run(scenario())


class Crash(BaseException):
    """Stands for the process dying: nothing after the step runs."""


@pytest.mark.parametrize("step", ["written", "recorded", "acked"])
def test_a_crash_at_each_step_leaves_every_entry_in_exactly_one_file(
    tmp_path: Path, step: str
) -> None:
    # Rolls often, dies at the second roll of the trades stream right after ``step``, restarts
    # and goes on with more entries.
    settings = _settings(tmp_path, batch_size=20)  # three reads hold the first 60 entries
    root = tmp_path / "archive"

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        keys = settings.keys
        added = await _fill(redis, settings, 60)
        rolls = {"n": 0}

        def crash(at: str, stream: str) -> None:
            if stream == keys.trades(P) and at == step:
                rolls["n"] += 1
                if rolls["n"] == 2:
                    raise Crash

        stop = asyncio.Event()
        clock = {"ns": 0}

        def tick() -> int:
            clock["ns"] += 10**9  # every read ages the segments; roll_s=3600 never reached
            return clock["ns"]

        with pytest.raises(BaseExceptionGroup):
            fast = dataclasses.replace(settings, archive_roll_s=1.5)  # a roll every other read
            await run(fast, stop, redis=redis, block_ms=20, on_step=crash, clock=tick)
        assert rolls["n"] == 2, "the crash did not happen"
        more = await _fill(redis, settings, 30, start=60)
        for stream in added:
            added[stream] += more[stream]
        stats = ArchiveStats()
        task = asyncio.create_task(run(settings, stop, redis=redis, block_ms=20, stats=stats))
        await until(lambda: _caught_up(redis, added), 20, "the archive to catch up")
        # What the restart found: files of an unrecorded segment, or recorded entries not acked.
        if step == "written":
            assert stats.removed_files >= 1
        if step == "recorded":
            assert stats.reacked >= 1
        stop.set()
        await task
        _expect_once(_archived(root, "trades"), added[keys.trades(P)])
        _expect_once(_archived(root, "raw"), added[keys.raw(P)])
        for stream in added:
            assert (await redis.xpending(stream, GROUP_ARCHIVE))["pending"] == 0

    asyncio.run(scenario())


class _DeafRedis(fakeredis.FakeAsyncRedis):
    """Reads of the venue's streams lose their cancellation, as a read whose wait ends at the
    same moment does on Python 3.11 (``asyncio.wait_for`` returns instead of raising)."""

    deaf = True

    async def xreadgroup(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().xreadgroup(*args, **kwargs)
        except asyncio.CancelledError:
            if not self.deaf or "binance:0" in str(args[2]):
                raise
            return []


def test_a_group_that_misses_its_cancellation_still_stops_when_another_fails(
    tmp_path: Path,
) -> None:
    settings = dataclasses.replace(_settings(tmp_path, batch_size=20), archive_roll_s=0.0)

    async def scenario() -> None:
        redis = _DeafRedis()
        await _fill(redis, settings, 20)

        def crash(at: str, stream: str) -> None:
            if stream == settings.keys.trades(P) and at == "written":
                raise Crash

        run_task = asyncio.create_task(
            run(settings, asyncio.Event(), redis=redis, block_ms=20, on_step=crash)
        )
        done, _ = await asyncio.wait([run_task], timeout=20)
        redis.deaf = False  # cancellable again, so that a failure here ends the test
        assert done, "the venue's group read on after the partition's group failed"
        with pytest.raises(BaseExceptionGroup):
            run_task.result()

    asyncio.run(scenario())


async def _last(redis: Any, settings: Settings) -> str:
    (entry,) = await redis.xrevrange(settings.keys.raw(P), count=1)
    return str(entry[0].decode())


async def _caught_up(redis: Any, added: dict[str, list]) -> bool:
    for stream, entries in added.items():
        groups = await redis.xinfo_groups(stream)
        found = [g for g in groups if g["name"] == GROUP_ARCHIVE.encode()]
        if not found or found[0]["last-delivered-id"].decode() != entries[-1][0]:
            return False
    return True


def test_retention_trims_only_what_the_archive_has_recorded(tmp_path: Path) -> None:
    settings = _settings(tmp_path, retention_maxlen=(("*", 10),))
    lane = PartitionLane(settings, P)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        keys = settings.keys
        added = await _fill(redis, settings, 100)
        trades = [i for i, _ in added[keys.trades(P)]]
        retention = Retention()
        # Not archived yet: nothing is trimmed, and the health record says why.
        await trim_streams(redis, lane.retained, settings.retention_maxlen, retention)
        assert await redis.xlen(keys.trades(P)) == 100
        assert keys.trades(P) in retention.alarms
        # The archive has read everything and recorded up to entry 40.
        await redis.xgroup_create(keys.trades(P), GROUP_ARCHIVE, id="$")
        await redis.set(archive_watermark(keys.trades(P)), trades[39])
        for _ in range(3):
            await trim_streams(redis, lane.retained, settings.retention_maxlen, retention)
        kept = [e[0].decode() for e in await redis.xrange(keys.trades(P))]
        assert kept == trades[40:], "entries not yet archived were trimmed"
        assert "not archived" in retention.alarms[keys.trades(P)]
        await redis.set(archive_watermark(keys.trades(P)), trades[-1])
        for _ in range(3):
            await trim_streams(redis, lane.retained, settings.retention_maxlen, retention)
        assert await redis.xlen(keys.trades(P)) == 10

    asyncio.run(scenario())


def test_the_archive_replays_as_the_raw_stream_it_archived(tmp_path: Path) -> None:
    # A real capture (REST snapshot included) replayed into Redis, archived, then replayed from
    # the archive into another namespace: the same raw entries, in the same order.
    first = _settings(tmp_path, symbols=("BTCUSDT",))
    second = dataclasses.replace(first, namespace="ar2")

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        quiet = io.StringIO()
        await replay_file(redis, first, read_recordings([BTCUSDT_CAPTURE]), conn="rec", out=quiet,
                          limit=3000)  # fmt: skip
        stop = asyncio.Event()
        stats = ArchiveStats()
        task = asyncio.create_task(run(first, stop, redis=redis, block_ms=20, stats=stats))
        last = await _last(redis, first)
        await until(lambda: _caught_up(redis, {first.keys.raw(P): [(last, {})]}), 20,
                    "the archive to catch up")  # fmt: skip
        stop.set()
        await task
        root = tmp_path / "archive"
        assert is_archive(root)
        await replay_file(redis, second, read_recordings([root]), conn="rec", out=quiet)
        fields = ("kind", "channel", "data")

        async def frames(settings: Settings) -> list[list[bytes]]:
            # A replay writes its own connect marker first: compare what the frames hold.
            entries = await redis.xrange(settings.keys.raw(P))
            return [[e[1][f.encode()] for f in fields] for e in entries
                    if e[1][b"kind"] != b"marker"]  # fmt: skip

        original = await frames(first)
        assert len(original) == 3000
        assert await frames(second) == original
        assert any(kind == b"rest" for kind, _, _ in original), (
            "the capture's REST snapshot is part of what is compared"
        )

    asyncio.run(scenario())


def test_a_redis_error_mid_segment_holds_nothing_twice(tmp_path: Path) -> None:
    # Redis drops the connection after the archive has read (and holds) some entries: it reads
    # its pending entries again and must not hold those twice.
    settings = _settings(tmp_path, batch_size=20)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        keys = settings.keys
        added = await _fill(redis, settings, 60)
        real = redis.xreadgroup
        calls = {"n": 0}

        async def flaky(group: str, consumer: str, streams: dict, **kwargs: Any) -> Any:
            if keys.trades(P) in streams:  # the partition's read: its third one fails
                calls["n"] += 1
                if calls["n"] == 3:
                    raise redis_errors.ConnectionError("connection reset by peer")
            return await real(group, consumer, streams, **kwargs)

        redis.xreadgroup = flaky  # type: ignore[method-assign]
        stop = asyncio.Event()
        stats = ArchiveStats()
        task = asyncio.create_task(run(settings, stop, redis=redis, block_ms=20, stats=stats))
        await until(lambda: _caught_up(redis, added), 20, "the archive to catch up")
        stop.set()
        await task
        assert stats.redis_errors == 1 and calls["n"] > 3
        _expect_once(_archived(tmp_path / "archive", "trades"), added[keys.trades(P)])
        _expect_once(_archived(tmp_path / "archive", "raw"), added[keys.raw(P)])

    asyncio.run(scenario())
