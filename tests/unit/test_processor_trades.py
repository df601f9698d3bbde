"""Trades from live frames, aggTrades and REST backfills: de-duplication, gaps, late bars."""

from __future__ import annotations

import dataclasses

import orjson

from common.schema import RawFrame, Trade
from common.units import MS
from processor.core import BatchOutput, PartitionState, process_batch
from processor.tradeids import MAX_MISSING_RANGES, TradeIds
from tests.unit.test_processor_books import cryptofeed, hftbacktest

PARTITION = "binance:0"
Entries = list[tuple[str, RawFrame]]


def trade_entries(limit: int = 3000) -> Entries:
    return [(e, f) for e, f in hftbacktest("btcusdt_20240808.gz") if '@trade"' in f.data][:limit]


def as_rest_trade(frame: RawFrame) -> dict[str, object]:
    """The /api/v3/trades form of a live trade frame."""
    d = orjson.loads(frame.data)["data"]
    return {
        "id": d["t"],
        "price": d["p"],
        "qty": d["q"],
        "quoteQty": "0",
        "time": d["T"],
        "isBuyerMaker": d["m"],
        "isBestMatch": True,
    }


def backfill(
    entry_id: str, frames: list[RawFrame], ts_recv: int | None = None
) -> tuple[str, RawFrame]:
    """A REST page of ``frames``' trades, fetched (by default) 2 s after the last was received."""
    if ts_recv is None:
        ts_recv = max(f.ts_recv for f in frames) + 2_000_000_000
    body = {
        "symbol": "BTCUSDT",
        "request": "GET /api/v3/trades?symbol=BTCUSDT&limit=1000",
        "response": [as_rest_trade(f) for f in frames],
    }
    data = orjson.dumps(body).decode()
    return entry_id, RawFrame("rest", "binance", "rest", 1, ts_recv, data, "trades_backfill")


def run(entries: list[tuple[str, RawFrame]], **kw: object) -> tuple[PartitionState, BatchOutput]:
    state = PartitionState(PARTITION, "binance", **kw)  # type: ignore[arg-type]
    return state, process_batch(state, entries, 1)


def test_trade_ids_track_gaps_backfills_and_duplicates() -> None:
    ids = TradeIds()
    assert ids.see("X", 10) == ("new", None)
    assert ids.see("X", 14) == ("new", 11)
    assert ids.missing == {"X": [[11, 13]]}
    assert ids.see("X", 12) == ("backfill", None)
    assert ids.see("X", 12) == ("duplicate", None)
    assert ids.see("X", 14) == ("duplicate", None)
    assert ids.missing == {"X": [[11, 11], [13, 13]]}
    assert [ids.see("X", 11)[0], ids.see("X", 13)[0]] == ["backfill", "backfill"]
    assert ids.missing == {}
    for n in range(MAX_MISSING_RANGES + 5):
        ids.see("X", 100 + 2 * n)
    assert len(ids.missing["X"]) == MAX_MISSING_RANGES
    restored = TradeIds()
    restored.load_state(orjson.loads(orjson.dumps(ids.to_state())))
    assert restored.to_state() == ids.to_state()


def test_a_backfill_fills_the_gap_the_live_stream_skipped() -> None:
    live = trade_entries(400)
    skipped = live[100:110]
    kept = live[:100] + live[110:]
    # The ingestor's backfill overlaps what was already seen on both sides of the hole.
    fill = backfill("1723161259999-0", [f for _, f in live[95:115]])
    state, out = run([*kept, fill])
    ids = [int(t.trade_id) for t in out.trades]
    first = int(as_rest_trade(live[0][1])["id"])  # type: ignore[call-overload]
    assert sorted(ids) == list(range(first, first + 400))  # every trade once
    backfilled = out.trades[-10:]
    assert [t.src for t in backfilled] == ["1723161259999-0"] * 10
    assert [t.trade_id for t in backfilled] == [str(as_rest_trade(f)["id"]) for _, f in skipped]
    live_by_id = {t.trade_id: t for t in run(live)[1].trades}
    for t in backfilled:  # same price, qty, side and time as the live frames said
        expected = live_by_id[t.trade_id]
        assert (t.price, t.qty, t.side, t.ts_event) == (
            expected.price,
            expected.qty,
            expected.side,
            expected.ts_event,
        )
    (gap,) = out.gaps
    assert (gap.stream, gap.expected, gap.received) == (
        "trades",
        str(first + 100),
        str(first + 110),
    )
    assert gap.entry_id == live[110][0]
    c = state.counters
    assert (c["trade_id_gaps"], c["trades_backfilled"], c["duplicate_trades"]) == (1, 10, 10)
    assert c["gaps"] == 1
    assert state.trade_ids.missing == {}


def test_backfilled_trades_revise_final_bars_within_the_horizon() -> None:
    live = trade_entries(3000)
    skipped, kept = live[100:110], live[:100] + live[110:]
    fill = backfill("1723161299999-0", [f for _, f in skipped])
    whole = {  # the last emission of each 1s bar when nothing was skipped
        b.ts_open: b for b in run(live)[1].bars if b.interval == "1s"
    }
    state, out = run([*kept, fill], horizon_ms=3_600_000)
    latest = {b.ts_open: b for b in out.bars if b.interval == "1s"}
    revised = [b for b in out.bars[-20:] if b.interval == "1s" and b.final]
    assert revised and state.counters["bar_revisions"] >= 10
    # Once revised, every bar is what it would have been had the trades come on time.
    assert latest == whole
    assert sum(b.trades for b in latest.values()) == 3000


def test_a_backfill_past_the_horizon_is_dead_lettered_as_too_late() -> None:
    live = trade_entries(3000)
    kept = live[:100] + live[110:]
    fill = backfill("1723161299999-0", [f for _, f in live[100:110]])
    state, out = run([*kept, fill], horizon_ms=0)
    assert len(out.trades) == 3000  # still trades: only the bars refuse them
    letters = [d for d in out.dead_letters if d.entry_id == "1723161299999-0"]
    assert len(letters) == 10 and "too late" in letters[0].reason
    assert Trade.from_fields(orjson.loads(letters[0].data)).trade_id == out.trades[-10].trade_id
    assert state.counters["late_trades"] == 10


def test_agg_trades_become_trades_with_their_aggregate_ids() -> None:
    _, out = run(list(cryptofeed("20210814_4fe0297")))
    assert len(out.trades) == 28 and out.dead_letters == []
    by_symbol: dict[str, list[int]] = {}
    for t in out.trades:
        by_symbol.setdefault(t.symbol, []).append(int(t.trade_id))
    assert sorted(by_symbol) == ["FTMUSDT", "SXPBTC", "XMRBTC"]
    assert all(ids == sorted(ids) for ids in by_symbol.values())
    first = out.trades[0]
    assert first.ts_event % MS == 0 and first.side in {"buy", "sell"}


def test_quiet_symbols_finalise_on_depth_events() -> None:
    entries = list(hftbacktest("btcusdt_20240808.gz"))
    first_trade = next(i for i, (_, f) in enumerate(entries) if '@trade"' in f.data)
    no_more_trades = entries[: first_trade + 1] + [
        (e, f) for e, f in entries[first_trade + 1 :] if "@depth" in f.data
    ]
    _, out = run(no_more_trades)
    finals = [b for b in out.bars if b.final]
    assert {b.interval for b in finals} == {"1s", "1m"}  # depth event times moved the watermark


def test_duplicate_quotes_are_dropped_by_update_id() -> None:
    quotes = [(e, f) for e, f in hftbacktest("btcusdt_20240808.gz") if "@bookTicker" in f.data]
    quotes = quotes[:200]
    doubled = []
    for n, (_, frame) in enumerate(quotes):
        doubled.append((f"5-{2 * n}", frame))
        doubled.append((f"5-{2 * n + 1}", dataclasses.replace(frame, conn="c2")))
    state, out = run(doubled)
    assert [q.update_id for q in out.quotes] == [
        str(orjson.loads(f.data)["data"]["u"]) for _, f in quotes
    ]
    assert state.counters["duplicate_quotes"] == 200
    q = out.quotes[0]
    assert (q.symbol, q.bid_price, q.ask_price, q.ts_event) == (
        "BTCUSDT",
        "61837.63000000",
        "61837.64000000",
        q.ts_recv,
    )


def test_a_version_1_checkpoint_is_still_read() -> None:
    import msgpack

    old = {
        "v": 1,
        "partition": PARTITION,
        "venue": "binance",
        "last_entry_id": "5-5",
        "last_trade_id": {"BTCUSDT": 41},
        "bars": {
            "open": [["BTCUSDT", "1s", [0, "1", "1", "1", "1", "2", 1, "41", "41", 7]]],
            "late": 0,
        },
        "strategies": {},
        "counters": {"trades": 3},
    }
    state = PartitionState.from_bytes(msgpack.packb(old), PARTITION, "binance")
    assert state.last_trade_id == {"BTCUSDT": 41} and state.counters["trades"] == 3
    assert state.bars.open[("BTCUSDT", "1s")][0].volume == 2
    assert state.last_entry_id == "5-5"
