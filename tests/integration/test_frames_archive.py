"""The DataFrame readers read the archive with the same call as Redis, and only the range asked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import fakeredis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tickpipe.archive import files
from tickpipe.archive.shell import ArchiveStats, run
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.tools.frames import (
    Archive,
    read_balances,
    read_bars,
    read_orders,
    read_partial_depth,
    read_raw,
    read_tickers,
    read_trades,
    read_venue_bars,
)

P = Partition("binance", 0)
START_NS = 1_733_356_800_000_000_000 - 3_600 * 10**9  # 2024-12-04 23:00 UTC: crosses midnight
STEP_NS = 2 * 10**9  # a trade every 2 s
TRADES = 5_000  # about 2.8 hours


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        namespace="fa", symbols=("BTCUSDT",), instance="f1", batch_size=500,
        health_interval_s=0.05, archive=True, archive_dir=str(tmp_path / "archive"),
        archive_roll_mb=1, archive_roll_s=3600.0,
    )  # fmt: skip


async def _fill(redis: Any, settings: Settings) -> None:
    keys = settings.keys
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(TRADES):
            ts = START_NS + n * STEP_NS
            pipe.xadd(keys.trades(P), {
                "v": "1", "symbol": "BTCUSDT", "trade_id": str(n), "price": f"{100 + n % 7}.25",
                "qty": "0.5", "side": "buy", "ts_event": str(ts), "ts_recv": str(ts + 1000),
                "ts_proc": str(ts + 2000),
            })  # fmt: skip
            data = f'{{"stream":"btcusdt@trade","data":{{"s":"BTCUSDT","t":{n}}}}}'
            raw = {"kind": "ws", "venue": "binance", "conn": "c", "seq": str(n),
                   "ts_recv": str(ts + 1000), "channel": "market", "data": data}  # fmt: skip
            pipe.xadd(keys.raw(P), raw)
        for minute in range(3):  # a bar, revised: only the latest revision is read
            for revision in range(2):
                pipe.xadd(keys.bars(P, "1m"), {
                    "v": "1", "symbol": "BTCUSDT", "ts_open": str(START_NS + minute * 60 * 10**9),
                    "open": "1", "high": "2", "low": "1", "close": str(1 + revision), "volume": "3",
                    "trades": "4", "revision": str(revision), "final": str(revision),
                })  # fmt: skip
        for n in range(5):  # tickers and balances have readers too
            ts = str(START_NS + n * 10**9)
            ticker = {"v": "1", "venue": "binance", "symbol": "BTCUSDT", "window": "24h",
                      "last": f"{n}.5", "ts_event": ts}  # fmt: skip
            pipe.xadd(keys.tickers(P), ticker)
            depth = {"v": "1", "symbol": "BTCUSDT", "update_id": ts, "depth": "5", "bids": "1:2",
                     "ts_event": ts}  # fmt: skip
            pipe.xadd(keys.partial_depth(P), depth)
            bar = {"v": "1", "symbol": "BTCUSDT", "interval": "1d@+08:00", "ts_open": str(START_NS),
                   "close": f"{n}.5", "revision": str(n), "final": "0", "ts_event": ts}  # fmt: skip
            pipe.xadd(keys.venue_bars(P), bar)
            pipe.xadd(keys.balances("binance"), {"v": "1", "event": "position",
                                                 "asset": ("BTC", "USDT")[n % 2], "free": str(n),
                                                 "locked": "0", "ts_event": ts})  # fmt: skip
        pipe.xadd(keys.orders("binance"), {
            "v": "1", "event": "intent", "symbol": "BTCUSDT", "client_order_id": "tp-1",
            "side": "BUY", "qty": "1", "ts": str(START_NS + 10**9),
        })  # fmt: skip
        await pipe.execute()


async def _archived(settings: Settings) -> Any:
    """Fill Redis, run the archive until it holds every entry, stop it (it writes them all)."""
    redis = fakeredis.FakeAsyncRedis()
    await _fill(redis, settings)
    stop = asyncio.Event()
    stats = ArchiveStats()
    task = asyncio.create_task(run(settings, stop, redis=redis, block_ms=20, stats=stats))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while stats.open_entries + stats.entries < 2 * TRADES + 27:
        assert loop.time() < deadline, "the archive did not read every entry in time"
        await asyncio.sleep(0.02)
    stop.set()
    await task
    return redis


def test_every_reader_gives_the_same_frame_from_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "ROW_GROUP", 200)  # many row groups: pushdown has work to do
    settings = _settings(tmp_path)

    async def scenario() -> None:
        redis = await _archived(settings)
        archive = Archive(tmp_path / "archive")
        minute = (START_NS + 1800 * 10**9, START_NS + 1860 * 10**9)
        midnight = (START_NS + 3590 * 10**9, START_NS + 3610 * 10**9)
        for lo, hi in (minute, midnight, (None, None)):
            from_redis = await read_trades(redis, settings, "BTCUSDT", lo, hi)
            from_archive = await read_trades(archive, settings, "BTCUSDT", lo, hi)
            assert len(from_redis) > 0
            pd.testing.assert_frame_equal(from_archive, from_redis)
        for reader in (read_bars, read_orders, read_tickers, read_partial_depth, read_venue_bars):
            pd.testing.assert_frame_equal(
                await reader(archive, settings, "BTCUSDT"), await reader(redis, settings, "BTCUSDT")
            )
        bars = await read_venue_bars(archive, settings, "BTCUSDT", interval="1d@+08:00")
        assert (list(bars["close"]), list(bars["revision"])) == ([4.5], [4])
        assert len(await read_partial_depth(archive, settings, "BTCUSDT")) == 5
        btc = await read_balances(archive, settings, "BTC")
        pd.testing.assert_frame_equal(btc, await read_balances(redis, settings, "BTC"))
        assert list(btc["free"]) == [0.0, 2.0, 4.0]
        pd.testing.assert_frame_equal(
            await read_raw(archive, settings, "BTCUSDT", *minute),
            await read_raw(redis, settings, "BTCUSDT", *minute),
        )

    asyncio.run(scenario())


def test_one_minute_reads_only_the_row_groups_of_that_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "ROW_GROUP", 100)  # 200 s of trades per row group
    settings = _settings(tmp_path)

    async def scenario() -> None:
        await _archived(settings)
        archive = Archive(tmp_path / "archive")
        lo = START_NS + 1800 * 10**9
        frame = await read_trades(archive, settings, "BTCUSDT", lo, lo + 60 * 10**9)
        assert len(frame) == 30
        groups: dict[str, int] = {}
        for path in (tmp_path / "archive").rglob("kind=trades/*/*/*.parquet"):
            day = path.parent.name
            groups[day] = groups.get(day, 0) + pq.ParquetFile(path).num_row_groups
        print(f"read {archive.stats}; row groups of trades by day: {groups}")
        # The minute lies in one or two row groups of 200 s; the other row groups of its day
        # are skipped by their statistics, and the next day's files are not even opened.
        assert archive.stats["row_groups"] <= 2 and archive.stats["files"] <= 2
        assert archive.stats["row_groups"] + archive.stats["skipped"] == groups["date=2024-12-04"]
        assert groups["date=2024-12-05"] > 0

    asyncio.run(scenario())
