"""Properties over random inputs: batch splits with checkpoints, book tops, trade id tracking."""

from __future__ import annotations

import heapq
from decimal import Decimal
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_processor_books import hftbacktest
from tests.unit.test_processor_trades import backfill
from tickpipe.common.schema import Bar, RawFrame, Signal, Trade
from tickpipe.common.settings import Settings
from tickpipe.processor.books import BOOK_DEPTH, OrderBook
from tickpipe.processor.core import BadEntry, PartitionState, process_batch
from tickpipe.processor.tradeids import TradeIds

PARTITION = "binance:0"
CONFIG = Settings(
    strategies=("threshold_cross", "rapid_move"),
    rapid_move_pct="0.02",
    rapid_move_window_ms=300,
    hysteresis_bps="0.5",
    bar_lateness_ms=300,
    bar_revision_horizon_ms=10_000,
)
Entries = list[tuple[str, RawFrame | BadEntry]]


@cache
def sequence() -> tuple[tuple[str, RawFrame | BadEntry], ...]:
    """Real frames (snapshot, depth, quotes, trades) with a skipped run of trades that a later
    backfill fills in, a duplicate connection's trades, and a garbage entry."""
    real = list(hftbacktest("btcusdt_20240808.gz")[:4000])
    trades = [i for i, (_, f) in enumerate(real) if '@trade"' in f.data]
    skipped = [real[i] for i in trades[40:46]]
    kept: Entries = [e for e in real if e not in skipped]
    at = kept.index(real[trades[150]])  # the backfill comes some seconds after the hole
    kept.insert(at, backfill("", [f for _, f in skipped]))
    kept.insert(700, ("", BadEntry("raw entry is malformed", "{}")))
    kept.insert(300, ("", real[trades[10]][1]))  # a repeat from another connection
    return tuple((f"1723161254000-{n}", frame) for n, (_, frame) in enumerate(kept))


def run(batches: list[Entries]) -> tuple[list[Trade], list[Bar], list[Signal]]:
    state = PartitionState.from_settings(CONFIG, PARTITION, "binance")
    trades, finals, signals = [], [], []
    for batch in batches:
        out = process_batch(state, batch, 7)
        trades += out.trades
        finals += [b for b in out.bars if b.final]
        signals += out.signals
        state = PartitionState.from_settings(CONFIG, PARTITION, "binance", state.to_bytes())
    return trades, finals, signals


@cache
def whole() -> tuple[list[Trade], list[Bar], list[Signal]]:
    return run([list(sequence())])


def test_the_sequence_exercises_what_the_property_covers() -> None:
    trades, finals, signals = whole()
    assert len(trades) > 200 and len(finals) > 20
    assert {s.strategy for s in signals} == {"threshold_cross", "rapid_move"}
    keys = [(b.interval, b.ts_open) for b in finals]
    assert len(keys) > len(set(keys))  # the backfill revised final bars


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=4100), max_size=12))
def test_any_split_with_checkpoints_gives_the_same_trades_final_bars_and_signals(
    cuts: list[int],
) -> None:
    entries = list(sequence())
    points = sorted({min(c, len(entries)) for c in cuts})
    batches = [entries[a:b] for a, b in zip([0, *points], [*points, len(entries)], strict=True)]
    assert run(batches) == whole()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=1, max_value=40),
            st.sampled_from(["0", "0", "1", "2.5"]),
        ),
        max_size=150,
    )
)
def test_book_top_equals_a_full_sort_after_any_updates(
    updates: list[tuple[bool, int, str]],
) -> None:
    book = OrderBook(0, [], [])
    model: dict[bool, dict[Decimal, str]] = {True: {}, False: {}}
    for is_bid, tick, qty in updates:
        price = f"{tick / 4:.2f}"
        side = book.bids if is_bid else book.asks
        side.set(price, qty)
        if Decimal(qty) == 0:
            model[is_bid].pop(Decimal(price), None)
        else:
            model[is_bid][Decimal(price)] = qty
        bids, asks = book.top()
        want_bids = heapq.nlargest(BOOK_DEPTH, model[True])
        want_asks = heapq.nsmallest(BOOK_DEPTH, model[False])
        assert [(Decimal(p), q) for p, q in bids] == [(p, model[True][p]) for p in want_bids]
        assert [(Decimal(p), q) for p, q in asks] == [(p, model[False][p]) for p in want_asks]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=80))
def test_trade_ids_accept_each_id_once_and_only_what_can_be_trusted(ids: list[int]) -> None:
    tracker = TradeIds()
    accepted: list[int] = []
    for trade_id in ids:
        verdict, _ = tracker.see("X", trade_id)
        if verdict != "duplicate":
            accepted.append(trade_id)
    assert len(accepted) == len(set(accepted))  # never twice
    # Everything above the first id is accepted once it comes (the missing ranges are few).
    first = ids[0]
    assert set(accepted) == {i for i in ids if i >= first}
