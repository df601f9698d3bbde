"""Unit tests of the trader's Alpaca core: request bodies, answer classification, order mapping."""

from __future__ import annotations

from typing import Any

import pytest

from tests.builders import build_signal
from tickpipe.common.errors import (
    AmbiguousOutcome,
    AuthError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
)
from tickpipe.common.schema import OrderIntent
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.core import build_intent
from tickpipe.venues.alpaca.orders import (
    auth_headers,
    classify,
    map_status,
    order_body,
    order_result,
    rfc3339_ms,
    time_in_force_for,
)


def intent(symbol: str = "FAKEPACA", order_type: str = "MARKET", price: str = "") -> OrderIntent:
    signal = build_signal(
        signal_id=f"threshold:{symbol}:1",
        venue="alpaca",
        symbol=symbol,
        qty="2",
        price=price,
        ts_event=1,
        ts_recv=1,
        ts_signal=1,
    )
    return build_intent(signal, ts_intent=2, order_type=order_type)


# An order object as the Trading API v2 renders it (fields the trader reads, plus some others).
ORDER: dict[str, Any] = {
    "id": "61e69015-8549-4bfd-b9c3-01e75843f47d",
    "client_order_id": "tp-abc",
    "created_at": "2026-11-24T13:00:00.123456789Z",
    "updated_at": "2026-11-24T13:00:01.250Z",
    "symbol": "FAKEPACA",
    "asset_class": "us_equity",
    "qty": "2",
    "filled_qty": "1.5",
    "filled_avg_price": "100.25",
    "order_type": "limit",
    "type": "limit",
    "side": "buy",
    "time_in_force": "day",
    "limit_price": "101",
    "status": "partially_filled",
}


def test_order_body_for_market_stock_and_limit_crypto() -> None:
    market = intent()
    assert order_body(market) == {
        "symbol": "FAKEPACA",
        "qty": "2",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": client_order_id_for("threshold:FAKEPACA:1"),
    }
    limit = order_body(intent("BTC/USD", "LIMIT", "65000.5"))
    assert limit["type"] == "limit" and limit["limit_price"] == "65000.5"
    assert limit["time_in_force"] == "gtc"
    assert time_in_force_for("AAPL") == "day" and time_in_force_for("ETH/USD") == "gtc"
    assert auth_headers("k", "s") == {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}


def test_success_returns_the_body() -> None:
    assert classify(200, ORDER, {}, now_s=0) == ORDER
    assert classify(200, [ORDER], {}, now_s=0) == [ORDER]
    assert classify(204, None, {}, now_s=0) is None


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (422, {"code": 40010001, "message": "client_order_id must be unique"}, DuplicateOrder),
        (422, {"code": 42210000, "message": "invalid time_in_force"}, OrderRejected),
        (404, {"code": 40410000, "message": "order not found"}, OrderNotFound),
        (401, {"code": 40110000, "message": "request is not authorized"}, AuthError),
        (403, {"message": "forbidden."}, AuthError),
        (403, {"code": 40310000, "message": "insufficient buying power"}, OrderRejected),
        (500, {"message": "internal server error"}, AmbiguousOutcome),
        (503, None, AmbiguousOutcome),
        (400, "not json", OrderRejected),
    ],
)
def test_errors_are_classified(status: int, body: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        classify(status, body, {}, now_s=0)
    assert type(caught.value) is error
    assert getattr(caught.value, "status", None) == status


def test_rate_limit_waits_retry_after_or_until_the_reset() -> None:
    with pytest.raises(RateLimited) as caught:
        classify(429, {"message": "rate limit exceeded"}, {"Retry-After": "3"}, now_s=100)
    assert caught.value.retry_after_s == 3
    with pytest.raises(RateLimited) as caught:
        classify(429, None, {"X-RateLimit-Reset": "107.5"}, now_s=100)
    assert caught.value.retry_after_s == 7.5
    with pytest.raises(RateLimited) as caught:
        classify(429, None, {"x-ratelimit-reset": "90"}, now_s=100)
    assert caught.value.retry_after_s == 0
    with pytest.raises(RateLimited) as caught:
        classify(429, None, {}, now_s=100)
    assert caught.value.retry_after_s == 1.0


@pytest.mark.parametrize(
    ("alpaca", "binance"),
    [
        ("new", "NEW"),
        ("accepted", "NEW"),
        ("pending_new", "NEW"),
        ("partially_filled", "PARTIALLY_FILLED"),
        ("filled", "FILLED"),
        ("canceled", "CANCELED"),
        ("done_for_day", "CANCELED"),
        ("replaced", "CANCELED"),
        ("expired", "EXPIRED"),
        ("rejected", "REJECTED"),
        ("pending_cancel", "PENDING_CANCEL"),
        ("suspended", "SUSPENDED"),
    ],
)
def test_status_mapping(alpaca: str, binance: str) -> None:
    assert map_status(alpaca) == binance


def test_order_result_is_binance_shaped() -> None:
    result = order_result(ORDER)
    assert result == {
        "symbol": "FAKEPACA",
        "clientOrderId": "tp-abc",
        "orderId": "61e69015-8549-4bfd-b9c3-01e75843f47d",
        "status": "PARTIALLY_FILLED",
        "origQty": "2",
        "executedQty": "1.5",
        "cummulativeQuoteQty": "150.375",
        "price": "101",
        "side": "BUY",
        "type": "LIMIT",
        "updateTime": rfc3339_ms("2026-11-24T13:00:01.250Z"),
    }
    fresh = order_result({**ORDER, "filled_qty": "0", "filled_avg_price": None, "status": "new"})
    assert fresh["executedQty"] == "0" and fresh["cummulativeQuoteQty"] == "0"
    assert fresh["status"] == "NEW"


def test_rfc3339_to_milliseconds() -> None:
    base = rfc3339_ms("2026-11-24T13:00:00Z")
    assert base == 1_795_525_200_000
    assert rfc3339_ms("2026-11-24T13:00:00.123456789Z") == base + 123
    assert rfc3339_ms("2026-11-24T14:00:00.5+01:00") == base + 500
    assert rfc3339_ms("2026-11-24T08:00:00-05:00") == base
    assert rfc3339_ms("yesterday") == 0 and rfc3339_ms(None) == 0
