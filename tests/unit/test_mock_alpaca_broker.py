"""Unit tests for the Alpaca mock's order state, matching, positions and account."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.alpaca.orders import TradingError
from tickpipe.mock_ws.market import MarketSim, SimTrade

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def broker(cash: str = "100000") -> AlpacaBroker:
    sim = MarketSim(("AAPL", "BTC/USD"), 1, 10.0, start_prices={"AAPL": "100", "BTC/USD": "50000"})
    return AlpacaBroker(sim, seed=1, cash=cash, hours="always")  # matching, not the calendar


def order(**fields: Any) -> dict[str, Any]:
    body = {"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market", "time_in_force": "day"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def trade(price: str, qty: str, at_ns: int, symbol: str = "AAPL", trade_id: int = 1) -> SimTrade:
    return SimTrade(symbol, trade_id, price, qty, at_ns // MS, False)


def test_market_order_fills_at_the_simulated_price_and_books_a_public_trade() -> None:
    b = broker()
    response, events = b.submit(order(client_order_id="c1"), T0)
    assert response["status"] == "accepted" and response["client_order_id"] == "c1"
    assert names(events) == ["new", "fill"]
    fill = events[1]
    assert fill["price"] == "100" and fill["qty"] == "10" and fill["position_qty"] == "10"
    assert fill["order"]["status"] == "filled" and fill["order"]["filled_avg_price"] == "100"
    assert fill["order"]["filled_at"] == fill["timestamp"]
    public = b.market.trades_due(T0)
    assert [(t.symbol, t.price, t.qty) for t in public] == [("AAPL", "100.00000000", "10.00000000")]
    assert b.cash == Decimal(99000)
    account = b.account_json()
    assert account["cash"] == "99000" and account["equity"] == "100000"
    assert account["long_market_value"] == "1000"
    [position] = b.positions_json()
    assert position["symbol"] == "AAPL" and position["qty"] == "10" and position["side"] == "long"
    assert position["avg_entry_price"] == "100" and position["cost_basis"] == "1000"


def test_resting_limit_fills_in_steps_as_trades_cross() -> None:
    b = broker()
    response, events = b.submit(order(type="limit", limit_price="99.50", qty="5"), T0)
    assert names(events) == ["new"]
    order_id = response["id"]
    assert b.on_trades([trade("99.40", "2", T0 - MS)], T0) == []  # printed before the order
    assert b.on_trades([trade("99.60", "50", T0 + MS)], T0 + MS) == []  # does not cross
    first = b.on_trades([trade("99.50", "2.7", T0 + 2 * MS)], T0 + 2 * MS)
    assert names(first) == ["partial_fill"]
    assert first[0]["qty"] == "2" and first[0]["price"] == "99.5"
    assert first[0]["order"]["status"] == "partially_filled"
    second = b.on_trades([trade("99.00", "40", T0 + 3 * MS)], T0 + 3 * MS)
    assert names(second) == ["fill"] and second[0]["qty"] == "3"
    assert b.get(order_id).status == "filled"
    assert b.positions["AAPL"].qty == 5 and b.cash == Decimal("100000") - Decimal("497.5")


def test_trade_size_is_shared_by_resting_orders_in_time_priority() -> None:
    b = broker()
    first, _ = b.submit(order(type="limit", limit_price="99", qty="3"), T0)
    second, _ = b.submit(order(type="limit", limit_price="99", qty="3"), T0 + 1)
    events = b.on_trades([trade("98.90", "4", T0 + MS)], T0 + MS)
    assert [(e["order"]["id"], e["event"], e["qty"]) for e in events] == [
        (first["id"], "fill", "3"),
        (second["id"], "partial_fill", "1"),
    ]


def test_cancel_then_cancel_again_is_422_and_unknown_is_404() -> None:
    b = broker()
    response, _ = b.submit(order(type="limit", limit_price="50"), T0)
    events = b.cancel(response["id"], T0 + 1)
    assert names(events) == ["canceled"]
    assert events[0]["order"]["status"] == "canceled" and events[0]["order"]["canceled_at"]
    with pytest.raises(TradingError) as again:
        b.cancel(response["id"], T0 + 2)
    assert again.value.status == 422
    with pytest.raises(TradingError) as unknown:
        b.cancel("00000000-0000-4000-8000-000000000000", T0)
    assert unknown.value.status == 404


def test_client_order_id_is_unique_forever() -> None:
    b = broker()
    response, _ = b.submit(order(type="limit", limit_price="50", client_order_id="x1"), T0)
    b.cancel(response["id"], T0)
    with pytest.raises(TradingError) as duplicate:
        b.submit(order(client_order_id="x1"), T0)
    assert duplicate.value.status == 422
    assert duplicate.value.body() == {"code": 40010001, "message": "client_order_id must be unique"}
    assert b.by_client_order_id("x1").id == response["id"]


def test_notional_order_fills_the_amount_at_the_price() -> None:
    b = broker()
    _, events = b.submit(order(qty=None, notional="250"), T0)
    fill = events[-1]
    assert fill["event"] == "fill" and fill["qty"] == "2.5"
    assert fill["order"]["notional"] == "250" and fill["order"]["qty"] is None
    assert fill["order"]["filled_qty"] == "2.5"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"qty": None}, "qty or notional is required"),
        ({"notional": "5"}, "only one of qty or notional may be given"),
        ({"type": "limit"}, "limit orders require limit_price"),
        ({"type": "trailing_stop"}, "order type 'trailing_stop' is not supported"),
        ({"type": "stop"}, "stop orders require stop_price"),
        ({"side": "hold"}, "invalid side"),
        ({"qty": "-1"}, "qty must be > 0"),
        ({"qty": "ten"}, "invalid qty"),
        ({"symbol": "BTC/USD", "qty": "0.1"}, "invalid crypto time_in_force"),
        ({"client_order_id": "x" * 129}, "client_order_id must be no more than 128 characters"),
        ({"symbol": "NOPE"}, 'asset "NOPE" not found'),
    ],
)
def test_invalid_orders_are_422(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TradingError) as refused:
        broker().submit(order(**fields), T0)
    assert refused.value.status == 422 and refused.value.message == message


def test_funds_are_checked() -> None:
    b = broker(cash="500")
    with pytest.raises(TradingError) as poor:
        b.submit(order(qty="6"), T0)
    assert poor.value.status == 403 and poor.value.message == "insufficient buying power"
    with pytest.raises(TradingError) as unheld:
        b.submit(order(symbol="BTCUSD", side="sell", qty="1", time_in_force="gtc"), T0)
    assert unheld.value.status == 403 and "insufficient balance for BTC" in unheld.value.message


def test_crypto_symbol_forms_resolve_to_the_pair() -> None:
    b = broker()
    response, events = b.submit(order(symbol="BTCUSD", qty="0.01", time_in_force="gtc"), T0)
    assert response["symbol"] == "BTC/USD" and response["asset_class"] == "crypto"
    assert names(events) == ["new", "fill"]
    assert b.positions_json()[0]["symbol"] == "BTCUSD"


def test_ioc_limit_that_cannot_fill_is_canceled() -> None:
    _, events = broker().submit(order(type="limit", limit_price="90", time_in_force="ioc"), T0)
    assert names(events) == ["new", "canceled"]


def test_reject_next_rejects_after_acceptance() -> None:
    b = broker()
    b.reject_next = 1
    response, events = b.submit(order(), T0)
    assert response["status"] == "accepted"
    assert names(events) == ["rejected"] and events[0]["order"]["failed_at"] is not None
    assert b.positions == {} and b.reject_next == 0
    assert names(b.submit(order(), T0)[1]) == ["new", "fill"]


def test_day_orders_expire() -> None:
    b = broker()
    day, _ = b.submit(order(type="limit", limit_price="50"), T0)
    b.submit(order(type="limit", limit_price="50", time_in_force="gtc"), T0)
    events = b.expire(T0 + 1)
    assert [(e["event"], e["order"]["id"]) for e in events] == [("expired", day["id"])]
    assert events[0]["order"]["expired_at"] is not None


def test_replace_ends_the_old_order_and_opens_a_new_one() -> None:
    b = broker()
    old, _ = b.submit(order(type="limit", limit_price="50"), T0)
    new, events = b.replace_order(old["id"], {"limit_price": "60", "qty": "4"}, T0 + 1)
    assert names(events) == ["replaced", "new"]
    assert events[0]["order"]["status"] == "replaced"
    assert events[0]["order"]["replaced_by"] == new["id"] and new["replaces"] == old["id"]
    assert new["limit_price"] == "60" and new["qty"] == "4"
    with pytest.raises(TradingError):
        b.replace_order(old["id"], {"limit_price": "61"}, T0 + 2)


def test_list_orders_by_status() -> None:
    b = broker()
    resting, _ = b.submit(order(type="limit", limit_price="50"), T0)
    filled, _ = b.submit(order(), T0 + 1)
    assert [o.id for o in b.list_orders("open")] == [resting["id"]]
    assert [o.id for o in b.list_orders("closed")] == [filled["id"]]
    assert [o.id for o in b.list_orders("all")] == [filled["id"], resting["id"]]
    assert [o.id for o in b.list_orders("all", direction="asc", limit=1)] == [resting["id"]]


def test_short_sale_and_cover_keep_cash_and_position_consistent() -> None:
    b = broker()
    b.submit(order(side="sell", qty="4"), T0)
    assert b.positions["AAPL"].qty == -4 and b.cash == Decimal(100400)
    assert b.positions_json()[0]["side"] == "short"
    b.submit(order(qty="4"), T0 + 1)
    assert b.positions["AAPL"].qty == 0 and b.cash == Decimal(100000)
    assert b.positions_json() == []


def test_stop_orders_rest_until_a_trade_reaches_the_stop_then_execute() -> None:
    b = broker()
    b.submit(order(qty="10"), T0)  # 10 AAPL held, to sell
    stop, events = b.submit(
        order(side="sell", type="stop", stop_price="95", qty="4", client_order_id="s"), T0
    )
    assert names(events) == ["new"] and stop["stop_price"] == "95"
    assert b.on_trades([trade("96", "50", T0 + MS)], T0 + MS) == []  # above a sell stop
    fired = b.on_trades([trade("94.80", "50", T0 + 2 * MS)], T0 + 2 * MS)
    assert names(fired) == ["fill"] and (fired[0]["qty"], fired[0]["price"]) == ("4", "94.8")
    buy, _ = b.submit(
        order(type="stop_limit", stop_price="105", limit_price="106", qty="2", client_order_id="l"),
        T0 + 3 * MS,
    )
    assert b.on_trades([trade("104", "50", T0 + 4 * MS)], T0 + 4 * MS) == []  # below a buy stop
    # Reached at 107: now a limit buy at 106, which that trade does not cross; 105.5 fills it.
    assert b.on_trades([trade("107", "50", T0 + 5 * MS)], T0 + 5 * MS) == []
    assert b.get(buy["id"]).triggered and b.get(buy["id"]).status == "new"
    filled = b.on_trades([trade("105.50", "50", T0 + 6 * MS)], T0 + 6 * MS)
    assert names(filled) == ["fill"] and filled[0]["price"] == "106"
    assert b.positions["AAPL"].qty == 10 - 4 + 2


def test_a_stop_already_reached_on_arrival_executes_at_once_and_crypto_has_no_stop() -> None:
    b = broker()
    _, events = b.submit(order(type="stop", stop_price="90", qty="1"), T0)  # buy stop, at 100
    assert names(events) == ["new", "fill"]
    with pytest.raises(TradingError, match="invalid order type for crypto order"):
        b.submit(order(symbol="BTC/USD", type="stop", stop_price="1", time_in_force="gtc"), T0)
    with pytest.raises(TradingError, match="invalid time_in_force for stop orders"):
        b.submit(order(type="stop", stop_price="90", time_in_force="ioc"), T0)
