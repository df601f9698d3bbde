"""Strategy hooks through process_batch: every input routed, failures isolated deterministically."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import pytest

from tests.unit.test_processor_core import PARTITION, TS_NOW, Entries, real_entries
from tickpipe.common.schema import Bar, Quote, RawFrame, Signal, Trade
from tickpipe.common.units import MS
from tickpipe.processor.core import BatchOutput, PartitionState, process_batch
from tickpipe.processor.records import BookTop
from tickpipe.processor.strategies import (
    BAR_REVISIONS,
    BARS,
    BOOK,
    INPUTS,
    QUOTES,
    TIMER,
    TRADES,
    SignalSpec,
    Strategy,
    ThresholdCross,
)

SECOND = 1_000 * MS


class Recorder(Strategy):
    """Write down every call, in order; its log is its checkpointed state."""

    name: ClassVar[str] = "recorder"
    inputs: ClassVar[frozenset[str]] = INPUTS
    timer_interval_ms: ClassVar[int] = 1_000

    def __init__(self) -> None:
        self.log: list[list[Any]] = []

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        self.log.append([TRADES, trade.trade_id, trade.ts_event])
        return []

    def on_quote(self, quote: Quote, ts_now: int) -> list[SignalSpec]:
        self.log.append([QUOTES, quote.update_id, quote.ts_event])
        return []

    def on_book(self, top: BookTop, ts_now: int) -> list[SignalSpec]:
        self.log.append([BOOK, top.update_id, top.ts_event])
        return []

    def on_bar(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        self.log.append([BARS, f"{bar.interval}@{bar.ts_open}", bar.revision])
        return []

    def on_bar_revision(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        self.log.append([BAR_REVISIONS, f"{bar.interval}@{bar.ts_open}", bar.revision])
        return []

    def on_timer(self, ts_event: int, ts_now: int) -> list[SignalSpec]:
        self.log.append([TIMER, ts_event])
        return [SignalSpec("BTCUSDT", "buy", "1", "1", f"tick {ts_event}")]

    def to_state(self) -> list[list[Any]]:
        return [list(item) for item in self.log]

    def load_state(self, data: Any) -> None:
        self.log = [list(item) for item in data]


class TradesOnly(Recorder):
    name: ClassVar[str] = "trades_only"
    inputs: ClassVar[frozenset[str]] = frozenset({TRADES})


class Flaky(Strategy):
    """Signal on every trade; raise on each trade whose id is a multiple of 7."""

    name: ClassVar[str] = "flaky"

    def __init__(self) -> None:
        self.seen = 0

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        self.seen += 1
        if int(trade.trade_id) % 7 == 0:
            raise ZeroDivisionError(f"bad luck at {trade.trade_id}")
        return [SignalSpec(trade.symbol, "buy", "1", trade.price, "every trade")]

    def to_state(self) -> int:
        return self.seen

    def load_state(self, data: Any) -> None:
        self.seen = int(data)


def trade_payloads(entries: Entries) -> list[dict[str, Any]]:
    """The payloads of the trade frames among ``entries``, in order."""
    payloads = [orjson.loads(f.data) for _, f in entries if isinstance(f, RawFrame)]
    return [p["data"] for p in payloads if p.get("data", {}).get("e") == "trade"]


def late_trade(entries: Entries) -> tuple[str, RawFrame]:
    """A trade 5 s of event time behind the last one: its 1 s bar is final, so it is revised."""
    last = trade_payloads(entries)[-1]
    data = {**last, "t": last["t"] + 1, "T": last["T"] - 5_000, "E": last["E"] - 5_000}
    frame = orjson.dumps({"stream": "btcusdt@trade", "data": data}).decode()
    recv = entries[-1][1].ts_recv + MS  # type: ignore[union-attr]
    return "1723161299000-0", RawFrame("ws", "binance", "c1", 10**6, recv, frame)


def all_entries() -> Entries:
    entries: Entries = list(real_entries())
    return [*entries, late_trade(entries)]


def test_every_hook_gets_its_events_in_order() -> None:
    entries = all_entries()
    recorder, trades_only = Recorder(), TradesOnly()
    state = PartitionState(PARTITION, "binance", [recorder, trades_only])
    out = process_batch(state, entries, TS_NOW)
    calls: dict[str, list[Any]] = {kind: [] for kind in INPUTS}
    for item in recorder.log:
        calls[item[0]].append(item[1:])
    # Ground truth: what the processor wrote to its output streams, in the same order.
    assert calls[TRADES] == [[t.trade_id, t.ts_event] for t in out.trades]
    assert calls[QUOTES] == [[q.update_id, q.ts_event] for q in out.quotes]
    assert calls[BOOK] == [[b.update_id, b.ts_event] for b in out.book_tops]
    finals: list[list[Any]] = []
    revisions: list[list[Any]] = []
    for bar in (b for b in out.bars if b.final):
        key = f"{bar.interval}@{bar.ts_open}"
        (revisions if [key] in [f[:1] for f in finals] else finals).append([key, bar.revision])
    assert calls[BARS] == finals and len(finals) > 10
    assert calls[BAR_REVISIONS] == revisions and len(revisions) == 1
    assert len(calls[QUOTES]) > 0 and len(calls[BOOK]) > 0
    # The timer: once per new second of the event-time clock (the running maximum), from the
    # second after the first event's.
    clock, expected = 0, []
    for item in recorder.log:
        if item[0] in (TRADES, QUOTES, BOOK) and item[2] > clock:
            if clock and item[2] // SECOND > clock // SECOND:
                expected.append([item[2] - item[2] % SECOND])
            clock = item[2]
    assert calls[TIMER] == expected and len(expected) > 3
    timer_signals = [s for s in out.signals if s.strategy == "recorder"]
    assert [s.signal_id for s in timer_signals] == [
        f"binance|{PARTITION}|timer{t}|recorder|0" for (t,) in expected
    ]
    # Only declared inputs are routed.
    assert {item[0] for item in trades_only.log} == {TRADES}
    assert [item[1] for item in trades_only.log] == [t.trade_id for t in out.trades]


def run(batches: Sequence[Entries], make: Any, *, checkpoint: bool) -> tuple[Any, ...]:
    state = PartitionState(PARTITION, "binance", make(), strategy_max_failures=5)
    outs: list[BatchOutput] = []
    for batch in batches:
        outs.append(process_batch(state, batch, TS_NOW))
        if checkpoint:
            state = PartitionState.from_bytes(
                state.to_bytes(), PARTITION, "binance", make(), strategy_max_failures=5
            )
    signals: list[Signal] = [s for o in outs for s in o.signals]
    warnings = [w for o in outs for w in o.warnings if "strategy" in w]
    return signals, warnings, state.strategy_failures, state.counters["strategy_errors"]


def flaky_and_threshold() -> list[Strategy]:
    return [Flaky(), ThresholdCross({"BTCUSDT": "61835"}, hysteresis_bps="1", order_qty="0.1")]


def test_a_failing_strategy_is_isolated_and_disabled_deterministically() -> None:
    entries = all_entries()
    whole = run([entries], flaky_and_threshold, checkpoint=False)
    signals, warnings, failures, errors = whole
    # The other strategy is untouched: the same signals as when it runs alone.
    alone = run([entries], lambda: flaky_and_threshold()[1:], checkpoint=False)[0]
    assert [s for s in signals if s.strategy == "threshold_cross"] == alone and alone
    # Flaky signalled on every trade up to its 5th failure, then never again.
    trade_ids = [int(s.signal_id.split("|")[2][1:]) for s in signals if s.strategy == "flaky"]
    fifth = [p["t"] for p in trade_payloads(entries) if p["t"] % 7 == 0][4]
    first = min(trade_ids)
    assert trade_ids == [t for t in range(first, fifth) if t % 7]
    assert failures == {"flaky": 5} and errors == 5
    assert len(warnings) == 5  # failures 1, 2, 3 and 4 (a power of two), then the disabling
    assert f"ZeroDivisionError: bad luck at {fifth}" in warnings[-1]
    assert "disabled after 5 failures" in warnings[-1]
    assert f"trade_id='{fifth}'" in warnings[-1]  # the event that caused it
    # Any batch split, with a checkpoint round trip between batches, gives the same result.
    seed = random.randrange(2**32)
    print(f"batch split seed {seed}")
    rng = random.Random(seed)
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(entries)), 12))
        batches = [entries[a:b] for a, b in zip([0, *cuts], [*cuts, len(entries)], strict=True)]
        assert run(batches, flaky_and_threshold, checkpoint=True) == whole


@pytest.mark.parametrize("limit", [1, 3])
def test_the_failure_limit_is_a_setting(limit: int) -> None:
    state = PartitionState(PARTITION, "binance", [Flaky()], strategy_max_failures=limit)
    process_batch(state, all_entries(), TS_NOW)
    assert state.strategy_failures == {"flaky": limit}
    assert state.counters["strategies_disabled"] == 1
