"""process_batch on real Binance frames: trades, bars, signals, determinism, dead letters."""

from __future__ import annotations

import dataclasses
import gzip
import itertools
from collections.abc import Sequence
from decimal import Decimal
from functools import cache

import orjson
import pytest

from tests.realdata import BTCUSDT_CAPTURE
from tickpipe.common.schema import Bar, RawFrame
from tickpipe.common.units import MS
from tickpipe.processor.core import (
    BadEntry,
    BatchOutput,
    PartitionState,
    entry_key,
    process_batch,
)
from tickpipe.processor.strategies import ThresholdCross

TRADES_WANTED = 2000
PARTITION = "binance:0"
TS_NOW = 1_800_000_000_000_000_000
CHANNEL = "depth_snapshot"


def rest_body(response: str, symbol: str = "BTCUSDT") -> str:
    request = f"GET /api/v3/depth?symbol={symbol}&limit=1000"
    return orjson.dumps(
        {"symbol": symbol, "request": request, "response": orjson.loads(response)}
    ).decode()


Entries = list[tuple[str, RawFrame | BadEntry]]


@cache
def real_entries() -> tuple[tuple[str, RawFrame], ...]:
    """Every frame of the capture up to its 2000th trade, as raw entries with stream ids."""
    out: list[tuple[str, RawFrame]] = []
    trades = 0
    with gzip.open(BTCUSDT_CAPTURE, "rt") as lines:
        for seq, line in enumerate(lines):
            recv, _, frame = line.rstrip("\n").partition(" ")
            if frame.startswith('{"stream"'):
                raw = RawFrame("ws", "binance", "c1", seq, int(recv), frame)
            else:  # the REST depth snapshot, as the ingestor writes it
                raw = RawFrame("rest", "binance", "c1", seq, int(recv), rest_body(frame), CHANNEL)
            out.append((f"1723161254000-{seq}", raw))
            if '@trade"' in frame:
                trades += 1
                if trades == TRADES_WANTED:
                    return tuple(out)
    raise AssertionError("capture holds fewer trades than wanted")


def new_state(level: str | None = "61835", bps: str = "1") -> PartitionState:
    levels = {"BTCUSDT": level} if level else {}
    strategy = ThresholdCross(levels, hysteresis_bps=bps, order_qty="0.001")
    return PartitionState(PARTITION, "binance", [strategy])


def restore(state: PartitionState) -> PartitionState:
    fresh = new_state()
    return PartitionState.from_bytes(state.to_bytes(), PARTITION, "binance", fresh.strategies)


def run_batches(batches: Sequence[Entries], *, checkpoint: bool = True) -> list[BatchOutput]:
    state = new_state()
    outs = []
    for batch in batches:
        outs.append(process_batch(state, batch, TS_NOW))
        if checkpoint:
            state = restore(state)
    return outs


def view(outs: list[BatchOutput]) -> dict[str, object]:
    """What must not depend on batching: trades, signals, final bars, last state of each bar."""
    latest: dict[tuple[str, str, int], Bar] = {}
    for out in outs:
        for bar in out.bars:
            key = (bar.symbol, bar.interval, bar.ts_open)
            if key not in latest or (bar.revision, bar.final) >= (
                latest[key].revision,
                latest[key].final,
            ):
                latest[key] = bar
    return {
        "trades": [t for o in outs for t in o.trades],
        "signals": [s for o in outs for s in o.signals],
        "final_bars": [b for o in outs for b in o.bars if b.final],
        "latest_bars": latest,
        "dead_letters": [d for o in outs for d in o.dead_letters],
        "acked": [a for o in outs for a in o.acked],
    }


def test_real_frames_give_every_trade_once_in_order() -> None:
    entries = list(real_entries())
    state = new_state()
    out = process_batch(state, entries, TS_NOW)
    ids = [int(t.trade_id) for t in out.trades]
    assert len(ids) == TRADES_WANTED
    assert ids == list(range(ids[0], ids[0] + TRADES_WANTED))  # contiguous
    assert ids[0] == 3735683259
    first = out.trades[0]
    assert (first.symbol, first.price, first.qty, first.side) == (
        "BTCUSDT",
        "61837.63000000",
        "0.02000000",
        "sell",
    )
    assert first.ts_event == 1723161255342 * MS
    assert first.ts_recv == 1723161254087896568
    assert first.ts_proc == TS_NOW
    assert first.src == next(eid for eid, f in entries if '"t":3735683259' in f.data)
    assert out.dead_letters == []
    assert out.acked == [eid for eid, _ in entries]
    c = state.counters
    assert c["trades"] == TRADES_WANTED
    assert c["ignored"] == 0
    assert c["quotes"] + c["duplicate_quotes"] + c["depth_diffs"] + c["snapshots"] == (
        len(entries) - TRADES_WANTED
    )
    assert c["snapshots"] == 1 and c["book_gaps"] == 0
    assert c["frames"] == len(entries)
    assert state.last_trade_id == {"BTCUSDT": ids[-1]}
    assert state.last_entry_id == entries[-1][0]


@pytest.mark.parametrize("interval,ms", [("1s", 1_000), ("1m", 60_000)])
def test_bars_equal_an_independent_computation(interval: str, ms: int) -> None:
    entries = list(real_entries())
    out = process_batch(new_state(), entries, TS_NOW)
    expected: dict[int, dict[str, object]] = {}
    for trade in out.trades:
        bucket = trade.ts_event // MS // ms * ms * MS
        b = expected.setdefault(bucket, {"prices": [], "volume": Decimal(0), "ids": []})
        b["prices"].append(trade.price)  # type: ignore[attr-defined]
        b["volume"] += Decimal(trade.qty)  # type: ignore[operator]
        b["ids"].append(trade.trade_id)  # type: ignore[attr-defined]
    bars = [b for b in out.bars if b.interval == interval]
    assert [b.ts_open for b in bars] == sorted(expected)
    latest = {b.ts_open: b for b in bars}  # the last emission of each bar
    assert sorted(latest) == sorted(expected)
    watermark = max(t.ts_event for t in out.trades) - 2000 * MS
    finals = [b.ts_open for b in bars if b.final]
    assert finals == [t for t in sorted(expected) if t + ms * MS <= watermark]
    assert all(b.final == (b.ts_open in finals) for b in latest.values())
    bars = list(latest.values())
    assert len(expected) >= (2 if interval == "1m" else 50)
    for bar in bars:
        exp = expected[bar.ts_open]
        prices: list[str] = exp["prices"]  # type: ignore[assignment]
        assert bar.open == prices[0] and bar.close == prices[-1]
        assert Decimal(bar.high) == max(map(Decimal, prices))
        assert Decimal(bar.low) == min(map(Decimal, prices))
        assert Decimal(bar.volume) == exp["volume"]
        assert bar.trades == bar.revision == len(prices)
        assert (bar.first_trade_id, bar.last_trade_id) == (exp["ids"][0], exp["ids"][-1])  # type: ignore[index]


def test_signals_follow_the_threshold_with_deterministic_ids() -> None:
    entries = list(real_entries())
    out = process_batch(new_state(), entries, TS_NOW)
    assert len(out.signals) >= 3
    by_src = {t.src: t for t in out.trades}
    sides = [s.side for s in out.signals]
    assert all(a != b for a, b in itertools.pairwise(sides))  # alternate
    for signal in out.signals:
        cause = by_src[signal.cause]
        assert signal.signal_id == f"binance|BTCUSDT|t{cause.trade_id}|threshold_cross|0"
        assert (signal.ts_event, signal.ts_recv, signal.ts_signal) == (
            cause.ts_event,
            cause.ts_recv,
            TS_NOW,
        )
        assert signal.qty == "0.001" and signal.price == cause.price
        level = Decimal("61835")
        if signal.side == "buy":
            assert Decimal(cause.price) >= level * Decimal("1.0001")
        else:
            assert Decimal(cause.price) <= level * Decimal("0.9999")


def test_any_split_with_a_checkpoint_gives_the_same_outputs() -> None:
    entries: Entries = list(real_entries())
    whole = view(run_batches([entries]))
    step = max(1, len(entries) // 23)
    for cut in [0, 1, 2, *range(3, len(entries), step), len(entries) - 1, len(entries)]:
        assert view(run_batches([entries[:cut], entries[cut:]])) == whole, cut


def test_every_split_point_of_a_dense_window_gives_the_same_outputs() -> None:
    trade_positions = [i for i, (_, f) in enumerate(real_entries()) if '@trade"' in f.data]
    window: Entries = list(real_entries()[trade_positions[300] : trade_positions[420]])
    whole = view(run_batches([window]))
    assert len(whole["trades"]) == 120  # type: ignore[arg-type]
    for cut in range(len(window) + 1):
        assert view(run_batches([window[:cut], window[cut:]])) == whole, cut


def test_many_small_batches_equal_one_batch() -> None:
    entries: Entries = list(real_entries())
    whole = view(run_batches([entries]))
    for size in (1, 7, 500):
        batches = [entries[i : i + size] for i in range(0, len(entries), size)]
        assert view(run_batches(batches, checkpoint=size != 1)) == whole


def test_ts_now_only_changes_the_stamps() -> None:
    entries = list(real_entries())[:3000]
    a = process_batch(new_state(), entries, 1)
    b = process_batch(new_state(), entries, 2)
    strip = {"ts_proc": 0}
    assert [dataclasses.replace(t, **strip) for t in a.trades] == [
        dataclasses.replace(t, **strip) for t in b.trades
    ]
    assert [dataclasses.replace(s, ts_signal=0) for s in a.signals] == [
        dataclasses.replace(s, ts_signal=0) for s in b.signals
    ]
    assert a.bars == b.bars


def test_replayed_entries_are_acked_without_output() -> None:
    entries = list(real_entries())[:2000]
    state = new_state()
    first = process_batch(state, entries, TS_NOW)
    assert first.trades
    again = process_batch(restore(state), entries, TS_NOW)
    assert (again.trades, again.bars, again.signals, again.dead_letters) == ([], [], [], [])
    assert again.acked == [eid for eid, _ in entries]


def test_trades_seen_on_an_overlapping_connection_are_dropped() -> None:
    entries = list(real_entries())[:3000]
    trades_only = [(eid, f) for eid, f in entries if '@trade"' in f.data]
    doubled: Entries = []
    for n, (_, frame) in enumerate(trades_only):
        doubled.append((f"5-{2 * n}", frame))
        doubled.append((f"5-{2 * n + 1}", dataclasses.replace(frame, conn="c2")))
    state = new_state()
    out = process_batch(state, doubled, TS_NOW)
    assert len(out.trades) == len(trades_only)
    assert state.counters["duplicate_trades"] == len(trades_only)
    assert [t.src for t in out.trades] == [f"5-{2 * n}" for n in range(len(trades_only))]


def raw(data: str, kind: str = "ws", venue: str = "binance") -> RawFrame:
    return RawFrame(kind, venue, "c1", 1, 10, data)


GOOD = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,'
    '"p":"100.5","q":"0.1","T":1,"m":false,"M":true}}'
)
GARBAGE = [
    ("not json", "not JSON"),
    ("[1,2,3]", "unrecognised frame"),
    ('{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"}}', "missing field"),
    (GOOD.replace('"100.5"', '"abc"'), "not a number"),
    (GOOD.replace('"100.5"', '"-1"'), "non-negative"),
    (GOOD.replace('"100.5"', "100.5"), "decimal string"),
    (GOOD.replace('"t":7', '"t":"7"'), "integers"),
    (GOOD.replace("btcusdt@trade", "ethusdt@trade"), "arrived on stream"),
    ('{"stream":"btcusdt@trade","data":[]}', "not a trade"),
]


def test_garbage_frames_become_dead_letters_and_processing_goes_on() -> None:
    entries: Entries = [(f"9-{n}", raw(data)) for n, (data, _) in enumerate(GARBAGE)]
    entries += [
        ("9-100", raw("{}", kind="nonsense")),
        ("9-101", raw(GOOD, venue="kraken")),
        ("9-102", BadEntry("raw entry is malformed: KeyError('kind')", '{"x":"1"}')),
        ("9-103", raw(GOOD)),
    ]
    state = new_state()
    out = process_batch(state, entries, TS_NOW)
    assert [t.trade_id for t in out.trades] == ["7"]
    assert [d.entry_id for d in out.dead_letters] == [eid for eid, _ in entries[:-1]]
    for letter, (data, reason) in zip(out.dead_letters, GARBAGE, strict=False):
        assert reason in letter.reason
        assert letter.data == data
        assert letter.to_fields() == {
            "reason": letter.reason,
            "entry_id": letter.entry_id,
            "data": data,
        }
    assert out.dead_letters[-1].reason.startswith("raw entry is malformed")
    assert state.counters["dead_letters"] == len(entries) - 1


def test_markers_replies_and_other_channels_are_passed_over_and_counted() -> None:
    entries: Entries = [
        ("1-0", raw('{"event":"connect","url":"wss://x"}', kind="marker")),
        ("1-1", raw('{"result":null,"id":1}')),
        ("1-2", raw('{"id":"a","status":200,"result":{"x":1}}')),
        ("1-3", raw('{"id":2,"status":400,"error":{"code":-1,"msg":"bad"}}')),
        ("1-4", raw('{"e":"serverShutdown","E":1770123456789}')),
        ("1-5", raw('{"lastUpdateId":1,"bids":[],"asks":[]}')),  # partial depth, no stream
        ("1-6", raw('{"lastUpdateId":1,"bids":[],"asks":[]}', kind="rest")),  # no known channel
        ("1-7", raw(GOOD.replace('{"stream":"btcusdt@trade","data":', "")[:-1])),  # raw form
    ]
    state = new_state()
    out = process_batch(state, entries, TS_NOW)
    assert [t.src for t in out.trades] == ["1-7"]
    c = state.counters
    assert (c["markers"], c["replies"], c["ignored"], c["dead_letters"]) == (1, 3, 2, 1)
    assert (c["ignored:serverShutdown"], c["ignored:partial_depth"]) == (1, 1)
    assert [(d.entry_id, d.reason) for d in out.dead_letters] == [
        ("1-6", "unknown REST channel ''")
    ]


def test_checkpoint_round_trip_keeps_everything() -> None:
    state = new_state()
    process_batch(state, list(real_entries())[:5000], TS_NOW)
    again = restore(state)
    assert again.to_bytes() == state.to_bytes()
    assert again.counters == state.counters
    assert again.late_trades == state.late_trades
    assert entry_key(again.last_entry_id) == entry_key(state.last_entry_id)


def test_a_checkpoint_of_another_partition_is_refused() -> None:
    from tickpipe.common.errors import DecodeError

    blob = new_state().to_bytes()
    with pytest.raises(DecodeError, match="belongs to"):
        PartitionState.from_bytes(blob, "binance:1", "binance")
    with pytest.raises(DecodeError):
        PartitionState.from_bytes(b"\x93garbage", PARTITION, "binance")


def test_entry_key_orders_stream_ids_numerically() -> None:
    assert entry_key("10-0") > entry_key("9-5")
    assert entry_key("9-10") > entry_key("9-9")
