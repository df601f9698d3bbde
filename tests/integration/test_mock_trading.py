"""Integration tests: signed REST trading, WS-API order methods and user-data delivery."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from tests.mock_support import Scenario, recv_json, request, run_scenario, signed
from tickpipe.mock_ws import MockExchange
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

KEY, SECRET = "mock-key", "mock-secret"


def run(scenario: Scenario, **kwargs: Any) -> None:
    run_scenario(scenario, timeout_s=9, **({"trades_per_s": 50.0} | kwargs))


async def rest(
    mock: MockExchange,
    method: str,
    path: str,
    params: dict[str, Any],
    *,
    in_body: bool = False,
    key: str | None = KEY,
    secret: str = SECRET,
) -> tuple[int, Any]:
    """Send a SIGNED request the way Binance documents it: HMAC over query + body."""
    params = {**params, "timestamp": time.time_ns() // 1_000_000}
    encoded = urlencode(params)
    signature = hmac_signature(secret, encoded)
    signed = f"{encoded}&signature={signature}"
    headers = {"X-MBX-APIKEY": key} if key else {}
    url = f"{mock.rest_url}{path}"
    async with aiohttp.ClientSession() as http:
        if in_body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            call = http.request(method, url, data=signed, headers=headers)
        else:
            call = http.request(method, f"{url}?{signed}", headers=headers)
        async with call as resp:
            assert "X-MBX-USED-WEIGHT-1M" in resp.headers
            return resp.status, await resp.json()


async def next_report(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message = await recv_json(ws)
        event = message.get("event", message)
        if event.get("e") == "executionReport":
            return dict(event)


def far_buy(mock: MockExchange, cid: str) -> dict[str, Any]:
    price = Decimal(mock.market.last_price("BTCUSDT")) * Decimal("0.5")
    return {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": f"{price:.2f}",
        "newClientOrderId": cid,
    }


def test_rest_place_query_list_cancel_with_user_data() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as ws:
            sub = await request(ws, "s", "userDataStream.subscribe.signature", signed({}))
            assert sub["status"] == 200
            status, placed = await rest(
                mock, "POST", "/api/v3/order", far_buy(mock, "r-1"), in_body=True
            )
            assert status == 200 and placed["status"] == "NEW" and placed["fills"] == []
            assert (await next_report(ws))["x"] == "NEW"
            query = {"symbol": "BTCUSDT", "origClientOrderId": "r-1"}
            status, got = await rest(mock, "GET", "/api/v3/order", query)
            assert status == 200 and got["orderId"] == placed["orderId"]
            assert got["timeInForce"] == "GTC" and got["type"] == "LIMIT"
            status, listed = await rest(mock, "GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
            assert [o["clientOrderId"] for o in listed] == ["r-1"]
            status, account = await rest(mock, "GET", "/api/v3/account", {})
            usdt = {b["asset"]: b for b in account["balances"]}["USDT"]
            assert Decimal(usdt["locked"]) == Decimal(placed["price"]) * Decimal("0.01")
            status, cancelled = await rest(mock, "DELETE", "/api/v3/order", query)
            assert status == 200 and cancelled["status"] == "CANCELED"
            report = await next_report(ws)
            assert (report["x"], report["C"]) == ("CANCELED", "r-1")
            status, again = await rest(mock, "DELETE", "/api/v3/order", query)
            assert (status, again) == (400, {"code": -2011, "msg": "Unknown order sent."})
            missing = {"symbol": "BTCUSDT", "orderId": 999}
            status, body = await rest(mock, "GET", "/api/v3/order", missing)
            assert (status, body["code"]) == (400, -2013)
            status, body = await rest(mock, "GET", "/api/v3/account", {}, secret="wrong")
            assert (status, body["code"]) == (400, -1022)
            status, body = await rest(mock, "GET", "/api/v3/account", {}, key=None)
            assert (status, body["code"]) == (401, -2014)

    run(scenario)


def test_ws_api_cancel_open_orders_and_account() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as ws:
            placed = await request(ws, "p", "order.place", signed(far_buy(mock, "w-1")))
            assert placed["status"] == 200 and placed["result"]["status"] == "NEW"
            listed = await request(ws, "l", "openOrders.status", signed({"symbol": "BTCUSDT"}))
            assert [o["clientOrderId"] for o in listed["result"]] == ["w-1"]
            account = await request(ws, "a", "account.status", signed({}))
            assert account["status"] == 200 and account["result"]["accountType"] == "SPOT"
            cancel = signed({"symbol": "BTCUSDT", "origClientOrderId": "w-1"})
            done = await request(ws, "c", "order.cancel", cancel)
            assert done["status"] == 200 and done["result"]["status"] == "CANCELED"
            again = await request(
                ws,
                "c2",
                "order.cancel",
                signed({"symbol": "BTCUSDT", "origClientOrderId": "w-1"}),
            )
            assert again["error"] == {"code": -2011, "msg": "Unknown order sent."}
            empty = await request(ws, "l2", "openOrders.status", signed({}))
            assert empty["result"] == []

    run(scenario)


def test_resting_order_fills_when_the_market_moves() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as ws:
            await request(ws, "s", "userDataStream.subscribe.signature", signed({}))
            last = Decimal(mock.market.last_price("BTCUSDT"))
            params = {**far_buy(mock, "m-1"), "price": f"{last - 2:.2f}"}
            placed = await request(ws, "p", "order.place", signed(params))
            assert placed["status"] == 200
            reports = []
            while not reports or reports[-1]["X"] != "FILLED":
                reports.append(await next_report(ws))
            fill = reports[-1]
            assert fill["x"] == "TRADE" and fill["L"] == f"{last - 2:.8f}"
            if placed["result"]["status"] == "NEW":
                assert fill["m"] is True

    run(scenario, trades_per_s=300.0)


def test_listen_key_stream_gets_raw_events() -> None:
    async def scenario(mock: MockExchange) -> None:
        headers = {"X-MBX-APIKEY": KEY}
        async with aiohttp.ClientSession() as http:
            url = f"{mock.rest_url}/api/v3/userDataStream"
            async with http.post(url, headers=headers) as resp:
                key = (await resp.json())["listenKey"]
            async with connect(f"{mock.ws_url}/ws/{key}") as ws:
                await rest(mock, "POST", "/api/v3/order", far_buy(mock, "k-1"), in_body=True)
                event = await recv_json(ws)
                assert event["e"] == "executionReport" and event["c"] == "k-1"
            async with http.put(url, params={"listenKey": key}, headers=headers) as resp:
                assert resp.status == 200 and await resp.json() == {}
            async with http.delete(url, params={"listenKey": key}, headers=headers) as resp:
                assert resp.status == 200
            async with http.put(url, params={"listenKey": key}, headers=headers) as resp:
                assert resp.status == 400 and (await resp.json())["code"] == -1125

    run(scenario)


def test_rest_order_entry_faults() -> None:
    async def scenario(mock: MockExchange) -> None:
        await mock.inject({"type": "order_error", "mode": "error", "kind": "rest"})
        status, body = await rest(mock, "POST", "/api/v3/order", far_buy(mock, "f-1"), in_body=True)
        assert (status, body["code"]) == (503, -1007)
        assert mock.engine.orders == []
        await mock.inject({"type": "order_error", "mode": "lost", "kind": "rest", "hang": 0.2})
        status, body = await rest(mock, "POST", "/api/v3/order", far_buy(mock, "f-2"), in_body=True)
        assert (status, body["code"]) == (504, -1007)
        assert [o.client_order_id for o in mock.engine.orders] == ["f-2"]

    run(scenario)


def test_balance_update_reaches_subscribers() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as ws:
            await request(ws, "s", "userDataStream.subscribe.signature", signed({}))
            async with aiohttp.ClientSession() as http:
                body = {"asset": "usdt", "delta": "-10.5"}
                async with http.post(f"{mock.rest_url}/_mock/balance", json=body) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["free"] == "999989.50000000"
                async with http.post(f"{mock.rest_url}/_mock/balance", json={}) as resp:
                    assert resp.status == 400
            update = (await recv_json(ws))["event"]
            assert update["e"] == "balanceUpdate" and (update["a"], update["d"]) == (
                "USDT",
                "-10.5",
            )
            position = (await recv_json(ws))["event"]
            assert position["e"] == "outboundAccountPosition"
            mock.adjust_balance("BTC", "1")
            update = (await recv_json(ws))["event"]
            assert (update["a"], update["d"]) == ("BTC", "1")

    run(scenario)


def test_ed25519_rest_signature_and_ws_api_session_logon() -> None:
    from urllib.parse import quote

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tickpipe.mock_ws.binance.auth import ed25519_signature

    private = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    async def scenario(mock: MockExchange) -> None:
        query = urlencode({"timestamp": time.time_ns() // 1_000_000})
        signature = quote(ed25519_signature(private, query), safe="")
        url = f"{mock.rest_url}/api/v3/account?{query}&signature={signature}"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"X-MBX-APIKEY": "ed-key"}) as resp,
        ):
            assert resp.status == 200 and (await resp.json())["accountType"] == "SPOT"
        async with connect(mock.ws_api_url) as ws:
            params: dict[str, Any] = {"apiKey": "ed-key", "timestamp": time.time_ns() // 10**6}
            params["signature"] = ed25519_signature(private, ws_api_payload(params))
            logon = await request(ws, "l", "session.logon", params)
            assert logon["status"] == 200 and logon["result"]["apiKey"] == "ed-key"
            order = {**far_buy(mock, "ed-1"), "timestamp": time.time_ns() // 10**6}
            placed = await request(ws, "p", "order.place", order)
            assert placed["status"] == 200 and placed["result"]["clientOrderId"] == "ed-1"

    run(scenario, ed25519_keys={"ed-key": pem})
