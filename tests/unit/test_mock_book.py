"""Unit tests for the simulated order book and the market feed built on it (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.mock_support import apply_levels
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.book import SimBook
from tickpipe.mock_ws.market import MarketSim

S = 1_000_000_000


def as_dict(levels: list[list[str]]) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(q) for p, q in levels}


def test_book_straddles_each_trade_and_never_crosses() -> None:
    book = SimBook("BTCUSDT", 6_180_000, seed=1, levels=50)
    (bid, _), (ask, _) = book.best()
    assert bid < ask and 50 <= len(book.bids) <= 51 and 50 <= len(book.asks) <= 51
    book.apply_trade(6_180_500, 100, buyer_is_maker=True)
    assert (book.best()[0][0], book.best()[1][0]) == (6_180_500, 6_180_501)
    book.apply_trade(6_170_000, 100, buyer_is_maker=False)
    assert (book.best()[0][0], book.best()[1][0]) == (6_169_999, 6_170_000)
    assert max(book.bids) < min(book.asks)
    assert len(book.bids) <= 52 and len(book.asks) <= 52


def test_snapshot_plus_diffs_rebuilds_the_book() -> None:
    book = SimBook("ETHUSDT", 268_000, seed=3, levels=40)
    prices = [268_010, 267_990, 268_300, 267_500, 267_520, 268_000]
    book.apply_trade(prices[0], 10, True)
    snap = book.snapshot(1000)
    bids, asks = as_dict(snap["bids"]), as_dict(snap["asks"])
    last = snap["lastUpdateId"]
    for i, price in enumerate(prices[1:]):
        book.apply_trade(price, 10, i % 2 == 0)
        if i % 2:
            continue
        diff = book.diff_since(last)
        assert diff is not None and diff.first_id == last + 1
        apply_levels(bids, diff.bids)
        apply_levels(asks, diff.asks)
        last = diff.last_id
    diff = book.diff_since(last)
    if diff is not None:
        apply_levels(bids, diff.bids)
        apply_levels(asks, diff.asks)
    assert book.diff_since(book.update_id) is None
    final = book.snapshot(1000)
    assert bids == as_dict(final["bids"]) and asks == as_dict(final["asks"])
    ticker = book.book_ticker()
    assert ticker["b"] == final["bids"][0][0] and ticker["a"] == final["asks"][0][0]
    assert ticker["u"] == final["lastUpdateId"]


def test_feed_events_history_and_rest_bodies() -> None:
    market = MarketSim(["BTCUSDT"], seed=5, trades_per_s=100.0)
    feed = MarketFeed(market, 5, history=50)
    market.trades_due(0)
    trades = market.trades_due(2 * S)
    events = feed.on_trades(trades, 2_000)
    streams = [e[0] for e in events]
    assert streams[:3] == ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@bookTicker"]
    aggs = [e[1] for e in events if e[0] == "btcusdt@aggTrade"]
    assert [a["a"] for a in aggs] == list(range(1, len(trades) + 1))
    assert all(a["f"] == a["l"] for a in aggs) and aggs[0]["p"] == trades[0].price
    recent = feed.recent_trades("BTCUSDT", 5)
    assert [t["id"] for t in recent] == [t.trade_id for t in trades[-5:]]
    kept = [t.trade_id for t in trades[-50:]]
    first = kept[0]
    assert [t["id"] for t in feed.historical_trades("BTCUSDT", 3, first + 2)] == kept[2:5]
    assert feed.historical_trades("BTCUSDT", 3, kept[-1] + 1) == []
    by_id = feed.agg_trades("BTCUSDT", 2, aggs[-3]["a"], None, None)
    assert [a["a"] for a in by_id] == [aggs[-3]["a"], aggs[-2]["a"]]
    t0 = trades[-10].trade_time_ms
    by_time = feed.agg_trades("BTCUSDT", 1000, None, t0, None)
    assert by_time and all(a["T"] >= t0 for a in by_time)
    assert Decimal(recent[0]["quoteQty"]) == Decimal(recent[0]["price"]) * Decimal(recent[0]["qty"])


def test_depth_events_are_contiguous_and_partial_only_when_wanted() -> None:
    market = MarketSim(["BTCUSDT"], seed=2, trades_per_s=50.0)
    feed = MarketFeed(market, 2)
    market.trades_due(0)
    last_u: dict[str, int] = {}
    for step in range(1, 8):
        feed.on_trades(market.trades_due(step * S // 10), step * 100)
        wanted = {"btcusdt@depth5@100ms"} if step == 3 else set()
        events = feed.depth_events(100, step * 100, wanted)
        names = [e[0] for e in events]
        assert ("btcusdt@depth5@100ms" in names) == (step == 3)
        assert "btcusdt@depth20@100ms" not in names
        for name, payload, _ in events:
            if payload.get("e") == "depthUpdate":
                assert name == "btcusdt@depth@100ms"
                if name in last_u:
                    assert payload["U"] == last_u[name] + 1
                assert payload["u"] >= payload["U"]
                last_u[name] = payload["u"]
            else:
                assert set(payload) == {"lastUpdateId", "bids", "asks"}
                assert len(payload["bids"]) == 5
    slow = feed.depth_events(1000, 800, set())
    assert {e[0] for e in slow} == {"btcusdt@depth", "btcusdt@depth@1000ms"}


def test_incremental_moves_keep_the_level_layout() -> None:
    import random

    book = SimBook("BTCUSDT", 6_180_000, seed=9, levels=30)
    span = book.levels * book.spacing
    rng = random.Random(3)
    snap = book.snapshot(10_000)
    bids, asks, last = as_dict(snap["bids"]), as_dict(snap["asks"]), snap["lastUpdateId"]
    price = 6_180_000
    for step in range(400):
        jump = rng.choice([1, 7, 300, 2_000, 20_000]) * rng.choice([-1, 1])
        price = max(50_000, price + jump)
        if step % 9 == 0:  # a taker sweeps a few levels first
            book.take(rng.random() < 0.5, price + (1 if step % 2 else -1) * 5_000, 10**9)
        book.apply_trade(price, 100, rng.random() < 0.5)
        (top_bid, _), (top_ask, _) = book.best()
        low = -(-(top_bid - span + 1) // book.spacing) * book.spacing
        want_bids = {top_bid, *range(low, top_bid, book.spacing)}
        high = (top_ask // book.spacing + 1) * book.spacing
        want_asks = {top_ask, *range(high, top_ask + span, book.spacing)}
        assert set(book.bids) == want_bids and set(book.asks) == want_asks, step
        diff = book.diff_since(last)
        assert diff is not None and diff.first_id == last + 1
        apply_levels(bids, diff.bids)
        apply_levels(asks, diff.asks)
        last = diff.last_id
    final = book.snapshot(10_000)
    assert bids == as_dict(final["bids"]) and asks == as_dict(final["asks"])


def test_the_history_and_the_book_log_leave_the_collectors_scans() -> None:
    """A full collection must not walk the mock's history: its rows become untracked."""
    import gc

    from tickpipe.mock_ws.binance.feed import TradeHistory
    from tickpipe.mock_ws.market import SimTrade

    history = TradeHistory(3)
    trades = [
        SimTrade("BTCUSDT", n, "61000.01000000", "0.1", 1_723_000_000_000 + n, True)
        for n in range(5)
    ]
    for n, trade in enumerate(trades):
        history.append((100 + n, trade))
    assert list(history) == [(102, trades[2]), (103, trades[3]), (104, trades[4])]
    assert history[0] == (102, trades[2]) and history[-1] == (104, trades[4]) and len(history) == 3
    book = SimBook("BTCUSDT", 6_100_000, seed=1)
    for n in range(5):
        book.apply_trade(6_100_000 + n, 1000, n % 2 == 0)
    for _ in range(4):  # nested tuples are untracked one level per collection
        gc.collect()
    assert not any(gc.is_tracked(row) for row in history._rows)
    assert not any(gc.is_tracked(entry) for entry in book.log)
    diff = book.diff_since(book.update_id - 3)
    assert diff is not None and diff.first_id == book.update_id - 2


def test_diffs_nobody_reads_are_not_built_and_later_ones_stay_contiguous() -> None:
    # The server's depth tick builds a symbol's diff only for a subscribed diff stream: merging
    # 100 ms of updates for streams nobody read held its event loop every tick.
    market = MarketSim(["BTCUSDT"], seed=4, trades_per_s=50.0)
    feed = MarketFeed(market, 4)
    market.trades_due(0)
    book = feed.books["BTCUSDT"]
    merged: list[int] = []
    original = book.diff_since

    def spy(after_id: int) -> Any:
        merged.append(after_id)
        return original(after_id)

    book.diff_since = spy  # type: ignore[method-assign]
    seen_u = 0
    for step in range(1, 12):
        feed.on_trades(market.trades_due(step * S // 10), step * 100)
        wanted = {"btcusdt@trade"} if step < 6 else {"btcusdt@depth@100ms"}
        before = book.update_id
        events = feed.depth_events(100, step * 100, wanted, diffs_wanted_only=True)
        diffs = [p for name, p, _ in events if p.get("e") == "depthUpdate"]
        if step < 6:
            assert diffs == [] and merged == [], (step, merged)
            skipped_to = before
            continue
        if step == 6:  # the first diff a new subscriber gets starts after what was passed over
            assert diffs and diffs[0]["U"] == skipped_to + 1, (diffs, skipped_to)
        elif diffs:
            assert diffs[0]["U"] == seen_u + 1
        if diffs:
            seen_u = diffs[0]["u"]
            assert seen_u == book.update_id
    assert merged, "the subscribed diff stream was never built"
