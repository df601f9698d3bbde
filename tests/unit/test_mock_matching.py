"""Unit tests of the mock exchange's matching engine and its Binance payloads."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.realdata import REALDATA
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected, split_symbol
from tickpipe.venues.binance.wire import parse_execution_report

NOW = 1_700_000_000_000_000_000


def engine() -> MatchingEngine:
    market = MarketSim(["BTCUSDT", "ETHUSDT"], seed=1, trades_per_s=20)
    market.trades_due(NOW - 10**9)
    market.trades_due(NOW)
    return MatchingEngine(market)


def order(**extra: Any) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", **extra}


def rejected(eng: MatchingEngine, params: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(OrderRejected) as info:
        eng.place(params, NOW)
    assert info.value.status == 400
    return info.value.code, info.value.msg


def test_market_buy_fills_fully_at_the_current_price() -> None:
    eng = engine()
    price = eng.market.last_price("BTCUSDT")
    out = eng.place(order(newClientOrderId="sig-1"), NOW)
    r = out.result
    assert r["status"] == "FILLED" and r["clientOrderId"] == "sig-1" and r["orderId"] == 1
    assert r["origQty"] == r["executedQty"] == "0.00100000"
    assert r["cummulativeQuoteQty"] == f"{Decimal(price) * Decimal('0.001'):.8f}"
    assert r["type"] == "MARKET" and r["side"] == "BUY" and r["orderListId"] == -1
    assert r["transactTime"] == NOW // 1_000_000
    (fill,) = r["fills"]
    assert fill["price"] == price and fill["qty"] == "0.00100000"
    assert fill["commissionAsset"] == "BTC" and fill["commission"] == "0.00000100"
    # The fill is a public trade with the next trade id.
    (trade,) = eng.market.trades_due(NOW)
    assert trade.trade_id == fill["tradeId"] and trade.price == price and not trade.buyer_is_maker


def test_balances_move_with_fills() -> None:
    eng = engine()
    price = Decimal(eng.market.last_price("ETHUSDT"))
    eng.place(order(symbol="ETHUSDT", side="SELL", quantity="2"), NOW)
    assert eng.balances["ETH"] == 98
    assert eng.balances["USDT"] == 1_000_000 + price * 2 * Decimal("0.999")


def test_result_and_ack_shapes() -> None:
    eng = engine()
    result = eng.place(order(newOrderRespType="RESULT"), NOW).result
    assert "fills" not in result and result["status"] == "FILLED"
    ack = eng.place(order(newOrderRespType="ACK"), NOW).result
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


def test_client_order_id_is_generated_when_absent() -> None:
    eng = engine()
    a = eng.place(order(), NOW).result["clientOrderId"]
    b = eng.place(order(), NOW).result["clientOrderId"]
    assert a and b and a != b


def test_duplicate_client_order_id_among_open_orders_is_rejected() -> None:
    eng = engine()
    first = eng.accept(order(newClientOrderId="dup"), NOW)
    assert first.status == "NEW"
    assert rejected(eng, order(newClientOrderId="dup")) == (-2010, "Duplicate order sent.")
    eng.execute(first, NOW)
    # Once filled, the id may be reused (uniqueness is among open orders only).
    again = eng.place(order(newClientOrderId="dup"), NOW)
    assert again.order.order_id == 2
    assert eng.find(client_order_id="dup").order_id == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (order(symbol="DOGEUSDT"), -1121),
        (order(symbol=""), -1102),
        (order(side="HOLD"), -1117),
        (order(type="FOO"), -1116),
        (order(type="STOP_LOSS"), -1102),  # stopPrice missing
        (order(type="LIMIT", price="100"), -1102),
        (order(type="LIMIT", price="100.001", timeInForce="GTC"), -1013),
        (order(type="LIMIT", price="100", timeInForce="GTD"), -1115),
        (order(quantity="abc"), -1100),
        (order(quantity="-1"), -1100),
        (order(quantity=""), -1102),
        (order(quantity="0"), -1013),
        (order(quantity="0.000001"), -1013),
        (order(quantity="100000"), -1013),
        (order(quantity="50"), -2010),  # 50 BTC costs more than the 1M USDT balance
        (order(side="SELL", quantity="101"), -2010),
        (order(newClientOrderId="has space"), -1100),
    ],
)
def test_bad_orders_are_rejected(params: dict[str, Any], code: int) -> None:
    eng = engine()
    assert rejected(eng, params)[0] == code
    assert eng.orders == []


def test_unknown_symbol_message() -> None:
    assert rejected(engine(), order(symbol="DOGEUSDT")) == (-1121, "Invalid symbol.")


def test_execution_reports_new_then_trade_with_every_field() -> None:
    eng = engine()
    out = eng.place(order(newClientOrderId="sig-2", side="SELL", quantity="0.5"), NOW)
    new, trade, account = out.events
    sample = json.loads(
        (REALDATA / "nautilus_trader/ws_spot_execution_report_binance_us.json").read_text()
    )
    assert set(new) == set(trade) == set(sample["data"])  # the venue's full key set
    assert (new["x"], new["X"], new["t"], new["N"], new["l"]) == (
        "NEW",
        "NEW",
        -1,
        None,
        "0.00000000",
    )
    assert (trade["x"], trade["X"]) == ("TRADE", "FILLED")
    assert trade["c"] == new["c"] == "sig-2" and trade["i"] == new["i"] == out.order.order_id
    assert trade["S"] == "SELL" and trade["o"] == "MARKET" and trade["q"] == "0.50000000"
    assert trade["l"] == trade["z"] == "0.50000000"
    assert trade["L"] == out.result["fills"][0]["price"]
    assert trade["t"] == out.result["fills"][0]["tradeId"]
    assert trade["Z"] == trade["Y"] == out.result["cummulativeQuoteQty"]
    assert trade["N"] == "USDT" and trade["C"] == "" and trade["g"] == -1
    assert trade["I"] == new["I"] + 1
    assert account["e"] == "outboundAccountPosition"
    assert {b["a"] for b in account["B"]} == {"BTC", "USDT"}
    update = parse_execution_report(trade, ts_recv=NOW)
    assert update.client_order_id == "sig-2" and update.status == "FILLED"
    assert update.filled_qty == "0.50000000" and update.side == "sell"


def test_order_lookup() -> None:
    eng = engine()
    placed = eng.place(order(newClientOrderId="look"), NOW).order
    assert eng.find(order_id=placed.order_id) is placed
    assert eng.find(order_id=str(placed.order_id), client_order_id="look") is placed
    assert eng.find(client_order_id="look").query_result()["status"] == "FILLED"
    for kwargs in (
        {"order_id": 99},
        {"client_order_id": "nope"},
        {"order_id": 1, "client_order_id": "x"},
    ):
        with pytest.raises(OrderRejected) as info:
            eng.find(**kwargs)
        assert (info.value.code, info.value.msg) == (-2013, "Order does not exist.")
    with pytest.raises(OrderRejected) as info:
        eng.find()
    assert info.value.code == -1102


def test_split_symbol() -> None:
    assert split_symbol("BTCUSDT") == ("BTC", "USDT")
    assert split_symbol("ETHBTC") == ("ETH", "BTC")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD")
