"""Unit tests of the mock's Spot order types and filters (Spot API "Filters", "Order types")."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected
from tickpipe.mock_ws.order_rules import MAX_NUM_ORDERS

NOW = 1_700_000_000_000_000_000
LATER = NOW + 1_000_000_000


def engine() -> MatchingEngine:
    market = MarketSim(["BTCUSDT", "ETHUSDT"], seed=1, trades_per_s=20)
    market.trades_due(NOW - 10**9)
    market.trades_due(NOW)
    return MatchingEngine(market)


def last(eng: MatchingEngine, symbol: str = "BTCUSDT") -> Decimal:
    return Decimal(eng.market.last_price(symbol))


def trade_at(price: Decimal, trade_id: int = 10**9) -> SimTrade:
    return SimTrade("BTCUSDT", trade_id, f"{price:.2f}", "0.5", LATER // 10**6, False)


def trigger_at(eng: MatchingEngine, factor: str) -> Decimal:
    """Return the last BTCUSDT price times ``factor``, to the cent: a stop price."""
    return (last(eng) * Decimal(factor)).quantize(Decimal("0.01"))


def place_triggered(eng: MatchingEngine, side: str, kind: str, stop: Decimal, **extra: str) -> Any:
    """Place a ``kind`` order of 0.01 BTCUSDT that waits for a trade at ``stop``."""
    params = {"symbol": "BTCUSDT", "side": side, "type": kind, "quantity": "0.01"}
    return eng.place(params | {"stopPrice": f"{stop:.2f}"} | extra, NOW).order


def refusal(eng: MatchingEngine, **params: Any) -> tuple[int, str]:
    with pytest.raises(OrderRejected) as info:
        eng.place({"symbol": "BTCUSDT", "side": "BUY", **params}, NOW)
    return info.value.code, info.value.msg


def test_stop_loss_limit_waits_then_works_when_the_market_falls_to_its_stop() -> None:
    eng = engine()
    stop = trigger_at(eng, "0.98")
    limit = {"price": f"{stop - 5:.2f}", "timeInForce": "GTC"}
    placed = place_triggered(eng, "SELL", "STOP_LOSS_LIMIT", stop, **limit)
    assert placed.status == "NEW" and not placed.working
    assert placed.query_result()["isWorking"] is False
    assert eng.locked["BTC"] == Decimal("0.01")  # the base it would sell is held
    assert eng.on_market_trade(trade_at(stop + 1), LATER) == []  # above the stop: waits
    events = eng.on_market_trade(trade_at(stop), LATER)
    # Triggered, it works as a LIMIT sell at stop - 5: the market (no book here: the last
    # price, unlimited) is above that, so it takes at once.
    assert placed.working and placed.status == "FILLED"
    assert all(f.price >= placed.price for f in placed.fills)
    assert [e["x"] for e in events if e.get("e") == "executionReport"] == ["TRADE"]
    assert eng.locked["BTC"] == 0


def test_stop_loss_market_fills_at_the_trigger_trade() -> None:
    eng = engine()
    stop = trigger_at(eng, "1.02")
    placed = place_triggered(eng, "BUY", "STOP_LOSS", stop)
    events = eng.on_market_trade(trade_at(stop + 2), LATER)
    assert placed.status == "FILLED" and placed.fills[0].price == stop + 2
    reports = [e for e in events if e.get("e") == "executionReport"]
    assert [(r["x"], r["X"], r["P"]) for r in reports] == [("TRADE", "FILLED", f"{stop:.8f}")]
    assert eng.locked["USDT"] == 0


def test_take_profit_triggers_the_other_way() -> None:
    eng = engine()
    target = trigger_at(eng, "1.02")
    placed = place_triggered(eng, "SELL", "TAKE_PROFIT", target)
    eng.on_market_trade(trade_at(target - 1), LATER)
    assert placed.status == "NEW"
    eng.on_market_trade(trade_at(target, 10**9 + 1), LATER)
    assert placed.status == "FILLED"


def test_refusals_carry_the_venue_codes() -> None:
    eng = engine()
    price = last(eng)
    assert refusal(eng, type="MARKET", quantity="0.00005") == (-1013, "Filter failure: NOTIONAL")
    assert refusal(eng, type="MARKET", quantity="0.001", quoteOrderQty="10") == (
        -1106, "Parameter 'quoteOrderQty' sent when not required.",
    )  # fmt: skip
    assert refusal(eng, type="MARKET")[0] == -1102
    assert refusal(eng, type="LIMIT_MAKER", quantity="0.001", price=f"{price * 2:.2f}") == (
        -2010, "Order would immediately match and take.",
    )  # fmt: skip
    too_high = {"quantity": "0.001", "price": f"{price * 6:.2f}", "timeInForce": "GTC"}
    assert refusal(eng, type="LIMIT", **too_high) == (
        -1013,
        "Filter failure: PERCENT_PRICE_BY_SIDE",
    )
    assert refusal(eng, type="STOP_LOSS", quantity="0.001", stopPrice=f"{price / 2:.2f}") == (
        -2010, "Stop price would trigger immediately.",
    )  # fmt: skip
    assert refusal(eng, type="MARKET", quantity="0.001", timeInForce="GTC")[0] == -1106
    assert refusal(eng, type="LIMIT", quantity="0.001", price="100", timeInForce="GTC")[0] == -1013
    assert eng.orders == []


def test_quote_order_qty_spends_the_amount() -> None:
    eng = engine()
    order = eng.place(
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "100"}, NOW
    ).order
    expected = (Decimal(100) / last(eng)).quantize(Decimal("0.00001"), "ROUND_DOWN")
    assert order.executed_qty == expected and order.cum_quote <= 100
    assert order.query_result()["origQuoteOrderQty"] == "100.00000000"


def test_max_num_orders_caps_open_orders_per_symbol() -> None:
    eng = engine()
    price = (last(eng) * Decimal("0.9")).quantize(Decimal("0.01"))
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.0001", "price": f"{price:.2f}"}  # fmt: skip
    for _ in range(MAX_NUM_ORDERS):
        eng.place(params, NOW)
    with pytest.raises(OrderRejected) as info:
        eng.place(params, NOW)
    assert (info.value.code, info.value.msg) == (-1013, "Filter failure: MAX_NUM_ORDERS")
    eth = f"{last(eng, 'ETHUSDT') * Decimal('0.9'):.2f}"
    eng.place({**params, "symbol": "ETHUSDT", "price": eth, "quantity": "0.01"}, NOW)  # per symbol


def test_cancel_all_cancels_every_open_order_of_the_symbol() -> None:
    eng = engine()
    price = (last(eng) * Decimal("0.9")).quantize(Decimal("0.01"))
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.001", "price": f"{price:.2f}"}  # fmt: skip
    ids = [eng.place(params, NOW).order.order_id for _ in range(3)]
    results, events = eng.cancel_all({"symbol": "BTCUSDT"}, LATER)
    assert [r["orderId"] for r in results] == ids and {r["status"] for r in results} == {"CANCELED"}
    assert [e["x"] for e in events if e.get("e") == "executionReport"] == ["CANCELED"] * 3
    assert eng.locked["USDT"] == 0
    with pytest.raises(OrderRejected) as info:
        eng.cancel_all({"symbol": "BTCUSDT"}, LATER)
    assert info.value.code == -2011
