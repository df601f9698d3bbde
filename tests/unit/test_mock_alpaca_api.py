"""Unit tests for the Alpaca REST core and the trading-stream session."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from tickpipe.mock_ws.alpaca.api import AlpacaApi, ApiResult
from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.alpaca.marketdata import AlpacaMarket
from tickpipe.mock_ws.alpaca.trading_stream import TradingSession
from tickpipe.mock_ws.market import MarketSim, SimTrade

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
HEADERS = {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}


def make_api() -> AlpacaApi:
    sim = MarketSim(("AAPL",), 1, 10.0, start_prices={"AAPL": "100"})
    return AlpacaApi(
        AlpacaBroker(sim, hours="always"), AlpacaMarket(sim.symbols), {"key": "secret"}
    )


def call(
    api: AlpacaApi,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> ApiResult:
    raw = b"" if body is None else orjson.dumps(body)
    return api.handle(method, path, query or {}, HEADERS if headers is None else headers, raw, T0)


LIMIT = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit", "time_in_force": "day",
         "limit_price": "50", "client_order_id": "a-1"}  # fmt: skip


def test_missing_or_wrong_keys_are_401() -> None:
    api = make_api()
    for headers in ({}, {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "nope"}):
        result = call(api, "GET", "/v2/account", headers=headers)
        assert result.status == 401
        assert result.body == {"code": 40110000, "message": "request is not authorized"}
    lower = {"apca-api-key-id": "key", "apca-api-secret-key": "secret"}
    assert call(api, "GET", "/v2/account", headers=lower).status == 200


def test_order_lifecycle_over_rest() -> None:
    api = make_api()
    placed = call(api, "POST", "/v2/orders", LIMIT)
    assert placed.status == 200 and [e["event"] for e in placed.events] == ["new"]
    assert placed.order_record is not None and placed.order_record["accepted"] is True
    order_id = placed.body["id"]
    assert call(api, "GET", f"/v2/orders/{order_id}").body["status"] == "new"
    by_client = call(api, "GET", "/v2/orders:by_client_order_id", query={"client_order_id": "a-1"})
    assert by_client.body["id"] == order_id
    assert [o["id"] for o in call(api, "GET", "/v2/orders").body] == [order_id]
    canceled = call(api, "DELETE", f"/v2/orders/{order_id}")
    assert canceled.status == 204 and canceled.body is None
    assert [e["event"] for e in canceled.events] == ["canceled"]
    assert call(api, "DELETE", f"/v2/orders/{order_id}").status == 422
    assert call(api, "DELETE", "/v2/orders/no-such-order").status == 404
    assert call(api, "GET", "/v2/orders", query={"status": "open"}).body == []
    assert len(call(api, "GET", "/v2/orders", query={"status": "closed"}).body) == 1
    duplicate = call(api, "POST", "/v2/orders", LIMIT)
    assert duplicate.status == 422
    assert duplicate.body == {"code": 40010001, "message": "client_order_id must be unique"}
    assert duplicate.order_record is not None and duplicate.order_record["accepted"] is False


def test_cancel_all_is_207_with_each_order() -> None:
    api = make_api()
    ids = [call(api, "POST", "/v2/orders", {**LIMIT, "client_order_id": f"c{i}"}).body["id"]
           for i in range(2)]  # fmt: skip
    result = call(api, "DELETE", "/v2/orders")
    assert result.status == 207
    assert sorted(r["id"] for r in result.body) == sorted(ids)
    assert all(r["status"] == 200 for r in result.body)
    assert [e["event"] for e in result.events] == ["canceled", "canceled"]


def test_account_and_positions_follow_fills() -> None:
    api = make_api()
    call(api, "POST", "/v2/orders", {**LIMIT, "type": "market", "limit_price": None, "qty": 3})
    assert call(api, "GET", "/v2/account").body["cash"] == "99700"
    [position] = call(api, "GET", "/v2/positions").body
    assert position["qty"] == "3" and position["market_value"] == "300"


def test_bad_requests() -> None:
    api = make_api()
    assert call(api, "GET", "/v2/nothing").status == 404
    assert call(api, "GET", "/v2/orders", query={"status": "weird"}).status == 422
    bad_json = api.handle("POST", "/v2/orders", {}, HEADERS, b"{", T0)
    assert bad_json.status == 422


def test_historical_trades_and_bars() -> None:
    api = make_api()
    trades = [SimTrade("AAPL", i, "100", "1", (T0 + i * 1000 * MS) // MS, False) for i in range(5)]
    api.market.on_trades(trades, T0 + 5000 * MS)
    page = call(api, "GET", "/v2/stocks/AAPL/trades", query={"limit": "2"}).body
    assert page["symbol"] == "AAPL" and [t["i"] for t in page["trades"]] == [0, 1]
    assert page["trades"][0]["t"] == "2023-11-14T22:13:20Z" and "T" not in page["trades"][0]
    token = page["next_page_token"]
    rest = call(api, "GET", "/v2/stocks/AAPL/trades", query={"page_token": token}).body
    assert [t["i"] for t in rest["trades"]] == [2, 3, 4] and rest["next_page_token"] is None
    window = {"start": "2023-11-14T22:13:21Z", "end": "2023-11-14T22:13:22Z"}
    ranged = call(api, "GET", "/v2/stocks/AAPL/trades", query=window).body
    assert [t["i"] for t in ranged["trades"]] == [1, 2]
    multi = call(api, "GET", "/v2/stocks/trades", query={"symbols": "AAPL,MSFT"}).body
    assert list(multi["trades"]) == ["AAPL"] and len(multi["trades"]["AAPL"]) == 5
    bars = call(api, "GET", "/v2/stocks/AAPL/bars", query={"timeframe": "1Min"}).body
    assert len(bars["bars"]) == 1 and bars["bars"][0]["n"] == 5
    assert call(api, "GET", "/v2/stocks/AAPL/bars", query={"timeframe": "1Day"}).status == 422
    assert call(api, "GET", "/v2/stocks/AAPL/trades", query={"start": "soon"}).status == 422


def test_trading_stream_auth_forms_and_listen() -> None:
    session = TradingSession(1, credentials={"key": "secret"})
    listen = orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}).decode()
    assert session.receive(listen) == [
        {"stream": "authorization", "data": {"status": "unauthorized", "action": "listen"}}
    ]
    legacy = {"action": "authenticate", "data": {"key_id": "key", "secret_key": "bad"}}
    assert session.receive(orjson.dumps(legacy)) == [
        {
            "stream": "authorization",
            "data": {
                "status": "unauthorized",
                "action": "authenticate",
                "message": "access key verification failed",
            },
        }
    ]
    legacy["data"]["secret_key"] = "secret"
    authorized = {"stream": "authorization",
                  "data": {"status": "authorized", "action": "authenticate"}}  # fmt: skip
    assert session.receive(orjson.dumps(legacy)) == [authorized]
    other = TradingSession(2, credentials={"key": "secret"})
    current = {"action": "auth", "key": "key", "secret": "secret"}
    assert other.receive(msgpack.packb(current)) == [authorized]
    assert session.receive(listen) == [
        {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    ]
    assert session.listening("trade_updates")
    stop = orjson.dumps({"action": "listen", "data": {"streams": []}}).decode()
    assert session.receive(stop) == [{"stream": "listening", "data": {"streams": []}}]
    assert not session.listening("trade_updates")
    assert session.receive("nope")[0]["action"] == "error"
