"""Ranged readers on fakeredis: where reading stops, the new kinds, export raw -> replay.

Entry ids are given explicitly (``<ms>-0``) so that where an entry was stored relative to the
time it carries is known: a late write past ``end``, a replay of old data (every id recent),
gap resolutions (no event time).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, cast

import fakeredis
import pandas as pd
import pytest
import redis.asyncio as aioredis

from tests.realdata import REALDATA
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.tools import cli, frames
from tickpipe.tools.cli_ops import run_operator_command
from tickpipe.tools.ops import read_recording, replay_file

SETTINGS = Settings(namespace="fr", symbols=("BTCUSDT", "ETHUSDT"), instance="t")
K = SETTINGS.keys
P = Partition("binance", 0)
MS = 1_000_000
T0_MS = 1_723_161_600_000
CRYPTOFEED = REALDATA / "cryptofeed" / "20210814_4fe0297"


class Counting:
    """A client that counts the stream entries it hands back."""

    def __init__(self, redis: Any) -> None:
        self.redis, self.fetched = redis, 0

    async def xrange(self, *args: Any, **kwargs: Any) -> Any:
        page = await self.redis.xrange(*args, **kwargs)
        self.fetched += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.redis, name)


def quote(ts_ms: int, symbol: str = "BTCUSDT") -> dict[str, str]:
    return {"v": "1", "venue": "binance", "symbol": symbol, "bid_price": "1", "bid_qty": "2",
            "ask_price": "3", "ask_qty": "4", "update_id": "9", "ts_event": str(ts_ms * MS),
            "ts_recv": str(ts_ms * MS)}  # fmt: skip


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_late_write_past_end_is_read_and_reading_stops_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(frames, "PAGE", 10)

    async def go() -> tuple[pd.DataFrame, int]:
        r = fakeredis.FakeAsyncRedis()
        stream = K.quotes(P)
        for i in range(200):  # one a second, stored when they happen
            if i == 32:  # second 29.9's quote stored late, after second 31's
                await r.xadd(stream, quote(T0_MS + 29_900), id=f"{T0_MS + 31_500}-0")
            await r.xadd(stream, quote(T0_MS + i * 1000), id=f"{T0_MS + i * 1000 + 1}-0")
        counting = Counting(r)
        df = await frames.read_quotes(cast(aioredis.Redis, counting), SETTINGS, "BTCUSDT",
                                      (T0_MS + 20_000) * MS, (T0_MS + 30_000) * MS)  # fmt: skip
        return df, counting.fetched

    df, fetched = run(go())
    seconds = [int(t.value // MS - T0_MS) for t in df.index]
    assert seconds == [*range(20_000, 30_000, 1000), 29_900]
    assert fetched <= 25  # from 15 s (the 5 s allowance) to one page past 30 s


def test_a_replay_of_old_data_reads_its_range_although_every_id_is_recent() -> None:
    async def go() -> pd.DataFrame:
        r = fakeredis.FakeAsyncRedis()
        for i in range(50):  # ids "now" (auto), times 2024
            await r.xadd(K.quotes(P), quote(T0_MS + i * 1000, ("BTCUSDT", "ETHUSDT")[i % 2]))
        return await frames.read_quotes(r, SETTINGS, "BTCUSDT", (T0_MS + 10_000) * MS,
                                        (T0_MS + 20_000) * MS)  # fmt: skip

    df = run(go())
    assert [int(t.value // MS - T0_MS) for t in df.index] == list(range(10_000, 20_000, 2000))


def test_book_signals_and_gaps_read_with_their_time_index() -> None:
    async def go() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        r = fakeredis.FakeAsyncRedis()
        await r.xadd(K.book(P), {"symbol": "BTCUSDT", "update_id": "7", "status": "live",
                                 "bid_price": "1.5", "bid_qty": "2", "ask_price": "1.6",
                                 "ask_qty": "3", "depth": "10", "bids": "1.5:2", "asks": "1.6:3",
                                 "ts_event": str(T0_MS * MS), "ts_recv": str(T0_MS * MS)},
                      id=f"{T0_MS}-0")  # fmt: skip
        await r.xadd(K.signals(P), {"signal_id": "s1", "symbol": "ETHUSDT", "side": "buy",
                                    "qty": "0.1", "price": "2", "ts_event": str(T0_MS * MS),
                                    "ts_signal": str(T0_MS * MS + 5)},
                      id=f"{T0_MS}-1")  # fmt: skip
        await r.xadd(K.gaps(P), {"symbol": "BTCUSDT", "stream": "trade", "expected": "5",
                                 "received": "9", "ts_event": str(T0_MS * MS)},
                      id=f"{T0_MS}-2")  # fmt: skip
        await r.xadd(K.gaps(P), {"kind": "resolution", "symbol": "BTCUSDT", "status": "filled",
                                 "first_id": "5", "last_id": "8"},
                      id=f"{T0_MS + 3000}-0")  # fmt: skip
        end = (T0_MS + 10_000) * MS
        return (
            await frames.read_kind(r, SETTINGS, "book", "BTCUSDT", T0_MS * MS, end),
            await frames.read_kind(r, SETTINGS, "signals", None, T0_MS * MS, end),
            await frames.read_kind(r, SETTINGS, "gaps", "BTCUSDT", T0_MS * MS, end),
        )

    book, signals, gaps = run(go())
    assert list(book["bid_price"]) == [1.5] and book["depth"].iloc[0] == 10
    assert list(signals["signal_id"]) == ["s1"] and signals.index.name == "ts_event"
    assert list(gaps["expected"].fillna("")) == ["5", ""]
    # the resolution has no event time: it stands at the time it was stored
    assert gaps.index[1] == pd.Timestamp((T0_MS + 3000) * MS, tz="UTC")


def test_export_raw_then_replay_gives_the_same_raw_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(namespace="ex", symbols=("FTMUSDT", "XMRBTC", "SXPBTC", "BADGERBTC"),
                        shards=2, instance="t")  # fmt: skip
    server = fakeredis.FakeServer()
    monkeypatch.setattr("tickpipe.tools.cli_ops.connect_redis",
                        lambda url: fakeredis.FakeAsyncRedis(server=server))  # fmt: skip

    def raw_entries(ns: Settings) -> list[tuple[str, str, str, int, str]]:
        async def go() -> list[tuple[str, str, str, int, str]]:
            r = fakeredis.FakeAsyncRedis(server=server)
            rows = []
            for part in ns.partitions():
                for _, fields in await r.xrange(ns.keys.raw(part)):
                    f = RawFrame.from_fields(fields)
                    rows.append((str(part), f.kind, f.channel, f.ts_recv, f.data))
            return rows

        return cast(list[tuple[str, str, str, int, str]], run(go()))

    def cli_run(ns: Settings, *argv: str) -> int:
        return run_operator_command(ns, "redis://fake", cli._parser().parse_args(list(argv)))

    assert cli_run(settings, "replay", str(CRYPTOFEED)) == 0
    first = raw_entries(settings)
    kinds = {(k, c) for _, k, c, _, _ in first}
    assert ("rest", "depth_snapshot") in kinds and ("ws", "market") in kinds
    assert sum(1 for _, k, _, _, _ in first if k == "rest") == 4
    for fmt in ("parquet", "csv"):
        out = tmp_path / f"raw.{fmt}"
        assert cli_run(settings, "export", "raw", "--format", fmt, "--out", str(out)) == 0
        again = Settings(namespace=f"again{fmt}", symbols=settings.symbols, shards=2,
                         instance="t")  # fmt: skip
        assert cli_run(again, "replay", str(out), "--conn", "rep") == 0
        second = raw_entries(again)
        # the replay's own connect marker per partition, then the same entries in order
        assert [e for e in second if e[1] != "marker"] == [e for e in first if e[1] != "marker"]


def test_unreadable_recordings_and_bad_speed_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    for argv, said in (
        (["replay", str(junk)], "not a recording"),
        (["replay", str(tmp_path / "none.gz")], "no such file"),
        (["replay", str(CRYPTOFEED), "--speed", "-1"], "speed must be"),
    ):
        args = cli._parser().parse_args(argv)
        code = run_operator_command(SETTINGS, "redis://127.0.0.1:1/0", args)
        err = capsys.readouterr().err
        assert code == 2 and said in err, (argv, err)


def test_speed_paces_by_recorded_time_on_an_injected_clock() -> None:
    recorded = list(read_recording(CRYPTOFEED / "BINANCE.ws.1.0"))[:400]
    span_ns = recorded[-1][0] - recorded[0][0]
    now = [0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += int(seconds * 1e9)

    out = io.StringIO()

    async def go(speed: float) -> Any:
        r = fakeredis.FakeAsyncRedis()
        return await replay_file(r, SETTINGS, recorded, conn="p", out=out, speed=speed,
                                 clock=lambda: now[0], sleep=sleep, progress_s=0.5,
                                 fraction=lambda: 0.25)  # fmt: skip

    stats = run(go(4.0))
    assert stats.frames == 400 and span_ns > 10**9
    assert "(25.0% of the input, about " in out.getvalue().splitlines()[0]
    assert now[0] == pytest.approx(span_ns / 4, abs=1e6)
    assert len(slept) > 10
    slept.clear()
    run(go(0.0))
    assert slept == []


def test_a_redis_error_reply_stops_the_replay_loudly() -> None:
    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        part = Partition("binance", shard_for("FTMUSDT", SETTINGS.shards))
        await r.set(K.raw(part), "not a stream")
        await replay_file(r, SETTINGS, read_recording(CRYPTOFEED / "BINANCE.ws.1.0"),
                          conn="e", out=io.StringIO())  # fmt: skip

    with pytest.raises(Exception, match="WRONGTYPE"):
        run(go())


def test_pacing_skips_a_long_recorded_silence_and_says_so() -> None:
    trade = '{"stream":"btcusdt@trade","data":{}}'
    hour = 3600 * 10**9
    recorded = [(10**18, trade), (10**18 + 10**9, trade), (10**18 + hour, trade)]
    now = [0]

    async def sleep(seconds: float) -> None:
        now[0] += int(seconds * 1e9)

    out = io.StringIO()
    run(replay_file(fakeredis.FakeAsyncRedis(), SETTINGS, recorded, conn="s", out=out,
                    speed=1.0, clock=lambda: now[0], sleep=sleep))  # fmt: skip
    assert now[0] == 10**9  # the first second is waited through, the hour is not
    assert "skipping 3,599 s of recorded silence" in out.getvalue()
