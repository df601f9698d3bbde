"""Unit tests of LIMIT orders, cancels and resting fills in the mock's matching engine."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickpipe.mock_ws.book import SimBook
from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected

NOW = 1_700_000_000_000_000_000


def setup() -> tuple[MatchingEngine, SimBook]:
    market = MarketSim(["BTCUSDT"], seed=1, trades_per_s=20)
    market.trades_due(NOW)
    book = SimBook("BTCUSDT", 6_180_000, seed=1, levels=10)
    return MatchingEngine(market, books={"BTCUSDT": book}), book


def limit(side: str, price: str, qty: str, tif: str = "GTC", **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "BTCUSDT",
        "side": side,
        "type": "LIMIT",
        "timeInForce": tif,
        "price": price,
        "quantity": qty,
        **extra,
    }


def units(book_side: dict[int, int], ticks: int) -> Decimal:
    return Decimal(book_side[ticks]) / 100_000


def test_gtc_buy_takes_the_top_ask_and_rests_the_rest_with_funds_locked() -> None:
    eng, book = setup()
    (_, _), (ask, _) = book.best()
    top = units(book.asks, ask)
    price = Decimal(ask) / 100
    out = eng.place(limit("BUY", f"{price:.2f}", f"{top + 1:f}", newClientOrderId="g1"), NOW)
    new, trade, position = out.events
    assert (new["x"], new["X"], new["p"], new["f"]) == ("NEW", "NEW", f"{price:.8f}", "GTC")
    assert (trade["x"], trade["X"], trade["m"]) == ("TRADE", "PARTIALLY_FILLED", False)
    assert Decimal(trade["l"]) == top and Decimal(trade["L"]) == price
    assert position["e"] == "outboundAccountPosition"
    assert out.result["status"] == "PARTIALLY_FILLED"
    assert ask not in book.asks  # the level was consumed
    assert eng.locked["USDT"] == price * 1
    assert [o.client_order_id for o in eng.open_orders("BTCUSDT")] == ["g1"]
    usdt = {b["a"]: b for b in position["B"]}["USDT"]
    assert Decimal(usdt["l"]) == price


def test_ioc_sweeps_levels_then_expires() -> None:
    eng, book = setup()
    asks = sorted(book.asks)[:2]
    depth = units(book.asks, asks[0]) + units(book.asks, asks[1])
    price = Decimal(asks[1]) / 100
    out = eng.place(limit("BUY", f"{price:.2f}", f"{depth + 5:f}", "IOC"), NOW)
    kinds = [(e["x"], e["X"]) for e in out.events if e["e"] == "executionReport"]
    assert kinds == [
        ("NEW", "NEW"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("TRADE", "PARTIALLY_FILLED"),
        ("EXPIRED", "EXPIRED"),
    ]
    assert out.order.executed_qty == depth and out.order.status == "EXPIRED"
    assert eng.locked.get("USDT", Decimal(0)) == 0
    trades = eng.market.trades_due(NOW)
    assert [t.price for t in trades] == [f"{Decimal(p) / 100:.8f}" for p in asks]


def test_fok_that_cannot_fill_expires_untouched() -> None:
    eng, book = setup()
    before = dict(book.asks)
    (_, _), (ask, _) = book.best()
    out = eng.place(limit("BUY", f"{Decimal(ask) / 100:.2f}", "10", "FOK"), NOW)
    assert [e["x"] for e in out.events if e["e"] == "executionReport"] == ["NEW", "EXPIRED"]
    assert out.order.executed_qty == 0 and book.asks == before
    assert eng.market.trades_due(NOW) == []


def test_resting_order_fills_as_maker_when_the_market_trades_through() -> None:
    eng, _ = setup()
    out = eng.place(limit("BUY", "61000.00", "0.01", newClientOrderId="r1"), NOW)
    assert out.order.status == "NEW" and len(out.events) == 2
    above = SimTrade("BTCUSDT", 10_000, "61000.01000000", "0.1", NOW // 10**6, True)
    assert eng.on_market_trade(above, NOW) == []
    through = SimTrade("BTCUSDT", 10_001, "60999.00000000", "0.1", NOW // 10**6, True)
    trade, position = eng.on_market_trade(through, NOW + 10**6)
    assert (trade["x"], trade["X"], trade["m"], trade["L"]) == (
        "TRADE",
        "FILLED",
        True,
        "61000.00000000",
    )
    assert position["e"] == "outboundAccountPosition"
    assert eng.locked["USDT"] == 0 and eng.open_orders() == []
    (own,) = eng.market.trades_due(NOW + 10**6)
    assert own.trade_id == trade["t"] and own.buyer_is_maker
    assert eng.on_market_trade(own, NOW + 10**6) == []


def test_cancel_unlocks_and_unknown_or_closed_orders_are_rejected() -> None:
    eng, _ = setup()
    placed = eng.place(limit("SELL", "70000.00", "2", newClientOrderId="s1"), NOW).order
    assert eng.locked["BTC"] == 2 and eng.balances["BTC"] == 98
    with pytest.raises(OrderRejected) as dup:
        eng.place(limit("SELL", "70000.00", "1", newClientOrderId="s1"), NOW)
    assert (dup.value.code, dup.value.msg) == (-2010, "Duplicate order sent.")
    result, events = eng.cancel({"symbol": "BTCUSDT", "origClientOrderId": "s1"}, NOW)
    assert result["status"] == "CANCELED" and result["origClientOrderId"] == "s1"
    assert result["orderId"] == placed.order_id and result["clientOrderId"]
    report = events[0]
    assert (report["x"], report["X"], report["C"]) == ("CANCELED", "CANCELED", "s1")
    assert report["c"] == result["clientOrderId"] and report["i"] == placed.order_id
    assert eng.locked["BTC"] == 0 and eng.balances["BTC"] == 100
    for params in (
        {"symbol": "BTCUSDT", "origClientOrderId": "s1"},
        {"symbol": "BTCUSDT", "orderId": 999},
    ):
        with pytest.raises(OrderRejected) as info:
            eng.cancel(params, NOW)
        assert (info.value.code, info.value.msg) == (-2011, "Unknown order sent.")
    account = eng.account(NOW)
    btc = {b["asset"]: b for b in account["balances"]}["BTC"]
    assert btc == {"asset": "BTC", "free": "100.00000000", "locked": "0.00000000"}
    assert account["accountType"] == "SPOT" and account["canTrade"] is True


def test_limit_without_book_crosses_at_the_last_price() -> None:
    market = MarketSim(["BTCUSDT"], seed=1, trades_per_s=20)
    eng = MatchingEngine(market)
    last = Decimal(market.last_price("BTCUSDT"))
    out = eng.place(limit("BUY", f"{last + 1:.2f}", "0.5", "IOC"), NOW)
    assert out.order.status == "FILLED" and out.order.fills[0].price == last
