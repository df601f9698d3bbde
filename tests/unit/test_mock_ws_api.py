"""Unit tests of the mock exchange's WebSocket API dispatcher (no sockets)."""

from __future__ import annotations

from typing import Any

import orjson

from mock_ws.binance.ws_api import ApiReply, ApiSession, WsApi
from mock_ws.market import MarketSim
from mock_ws.matching import MatchingEngine
from venues.binance.wire import hmac_signature, ws_api_payload

NOW = 1_700_000_000_000_000_000
KEY, SECRET = "mock-key", "mock-secret"


def make_api() -> WsApi:
    market = MarketSim(["BTCUSDT"], seed=1, trades_per_s=20)
    market.trades_due(NOW)
    return WsApi(MatchingEngine(market), api_key=KEY, api_secret=SECRET)


def signed(params: dict[str, Any], now_ns: int = NOW, secret: str = SECRET) -> dict[str, Any]:
    out = {"apiKey": KEY, "timestamp": now_ns // 1_000_000, **params}
    out["signature"] = hmac_signature(secret, ws_api_payload(out))
    return out


def call(api: WsApi, s: ApiSession, method: str, params: Any = None, rid: Any = 1) -> ApiReply:
    request: dict[str, Any] = {"id": rid, "method": method}
    if params is not None:
        request["params"] = params
    return api.handle(s, orjson.dumps(request), NOW)


def test_ping_time_and_rate_limits() -> None:
    api = make_api()
    s = api.open(1)
    ping = call(api, s, "ping", rid="abc").response
    assert ping["id"] == "abc" and ping["status"] == 200 and ping["result"] == {}
    assert ping["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    assert call(api, s, "v3/time").response["result"] == {"serverTime": NOW // 1_000_000}
    quiet = call(api, s, "ping", {"returnRateLimits": False}).response
    assert "rateLimits" not in quiet
    assert "rateLimits" in call(api, s, "ping").response
    assert "rateLimits" not in call(api, api.open(2, return_rate_limits=False), "ping").response


def test_unknown_method_and_malformed_requests() -> None:
    api = make_api()
    s = api.open(1)
    bad = call(api, s, "order.teleport").response
    assert bad["status"] == 400 and bad["error"]["code"] == -1100 and bad["id"] == 1
    assert api.handle(s, b"{oops", NOW).response["status"] == 400
    assert call(api, s, "", rid=3).response["error"]["code"] == -1102


def test_order_place_pushes_events_to_subscribed_sessions() -> None:
    api = make_api()
    trader, listener, other = api.open(1), api.open(2), api.open(3)
    sub = call(api, listener, "userDataStream.subscribe.signature", signed({})).response
    assert sub["status"] == 200 and sub["result"] == {"subscriptionId": 0}
    again = call(api, listener, "userDataStream.subscribe.signature", signed({})).response
    assert again["error"]["code"] == -2035
    params = signed(
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.001",
            "newClientOrderId": "c-1",
        }
    )
    reply = call(api, trader, "order.place", params)
    assert reply.response["status"] == 200 and reply.response["result"]["status"] == "FILLED"
    assert [s.conn_id for s, _ in reply.deliveries] == [2, 2, 2]
    kinds = [(m["event"]["e"], m["event"].get("x")) for _, m in reply.deliveries]
    assert kinds == [
        ("executionReport", "NEW"),
        ("executionReport", "TRADE"),
        ("outboundAccountPosition", None),
    ]
    assert all(m["subscriptionId"] == 0 for _, m in reply.deliveries)
    assert reply.order_record is not None
    assert (
        reply.order_record["status"] == "FILLED" and reply.order_record["client_order_id"] == "c-1"
    )
    assert other.subscription_id is None


def test_order_place_errors_are_recorded() -> None:
    api = make_api()
    s = api.open(1)
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    wrong_secret = call(api, s, "order.place", signed(base, secret="nope"))
    assert wrong_secret.response["status"] == 400
    assert wrong_secret.response["error"] == {
        "code": -1022,
        "msg": "Signature for this request is not valid.",
    }
    assert (
        wrong_secret.order_record is not None and wrong_secret.order_record["status"] == "REJECTED"
    )
    stale = call(api, s, "order.place", signed(base, now_ns=NOW - 6 * 10**9)).response
    assert (stale["status"], stale["error"]["code"]) == (400, -1021)
    wrong_key = call(api, s, "order.place", {**signed(base), "apiKey": "other"}).response
    assert (wrong_key["status"], wrong_key["error"]["code"]) == (401, -2015)
    assert api.engine.orders == []


def test_order_status_and_unsubscribe() -> None:
    api = make_api()
    s = api.open(1)
    params = signed(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "MARKET",
            "quantity": "1",
            "newClientOrderId": "q-1",
        }
    )
    placed = call(api, s, "order.place", params).response["result"]
    by_client = call(
        api, s, "order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "q-1"})
    )
    by_id = call(
        api, s, "order.status", signed({"symbol": "BTCUSDT", "orderId": placed["orderId"]})
    )
    for reply in (by_client, by_id):
        result = reply.response["result"]
        assert result["status"] == "FILLED" and result["clientOrderId"] == "q-1"
        assert result["executedQty"] == "1.00000000"
    missing = call(api, s, "order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "zz"}))
    assert missing.response["status"] == 400
    assert missing.response["error"] == {"code": -2013, "msg": "Order does not exist."}
    unsigned = call(api, s, "order.status", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"})
    assert unsigned.response["error"]["code"] == -1102
    call(api, s, "userDataStream.subscribe.signature", signed({}))
    assert call(api, s, "session.subscriptions").response["result"] == [{"subscriptionId": 0}]
    bye = call(api, s, "userDataStream.unsubscribe")
    assert bye.response["result"] == {}
    assert bye.deliveries[0][1]["event"]["e"] == "eventStreamTerminated"
    assert s.subscription_id is None
    again = call(api, s, "userDataStream.subscribe.signature", signed({})).response
    assert again["result"] == {"subscriptionId": 1}


def test_all_orders_lists_a_symbols_orders_open_and_closed_by_time_or_id() -> None:
    api = make_api()
    s = api.open(1)
    for n in range(3):
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                  "newClientOrderId": f"c{n}"}  # fmt: skip
        assert call(api, s, "order.place", signed(params)).response["status"] == 200
    everything = call(api, s, "allOrders", signed({"symbol": "BTCUSDT"})).response["result"]
    assert [o["clientOrderId"] for o in everything] == ["c0", "c1", "c2"]
    assert {o["status"] for o in everything} == {"FILLED"}
    paged = signed({"symbol": "BTCUSDT", "orderId": everything[1]["orderId"], "limit": 1})
    assert [o["clientOrderId"] for o in call(api, s, "allOrders", paged).response["result"]] == [
        "c1"
    ]
    later = signed({"symbol": "BTCUSDT", "startTime": NOW // 1_000_000 + 1})
    assert call(api, s, "allOrders", later).response["result"] == []
    missing = call(api, s, "allOrders", signed({})).response
    assert missing["status"] == 400 and missing["error"]["code"] == -1102
