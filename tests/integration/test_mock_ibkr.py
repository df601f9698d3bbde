"""Integration tests: the IBKR gateway mock with raw HTTP/WebSocket clients.

Shapes pinned here come from the Client Portal Web API reference (``/tickle``,
``/iserver/auth/status``, ``/iserver/accounts``, ``/iserver/secdef/search``, ``/trsrv/stocks``,
orders and ``/iserver/reply/{id}``) and its WebSocket page (``waiting for session``, ``sts``,
``system``, ``smd`` updates holding only changed fields, ``sor``/``str``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tickpipe.mock_ws import MockExchange, start_mock

Scenario = Callable[[MockExchange, aiohttp.ClientSession], Awaitable[None]]


def run(scenario: Scenario, **ibkr_options: Any) -> None:
    async def main() -> None:
        mock = await start_mock(ibkr_port=0, trades_per_s=40.0, ibkr_options=ibkr_options)
        try:
            async with aiohttp.ClientSession(base_url=f"{mock.ibkr_rest_url}/") as http:
                await asyncio.wait_for(scenario(mock, http), 20)
        finally:
            await mock.close()

    asyncio.run(main())


async def call(http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, path.lstrip("/"), **kw) as response:
        return response.status, orjson.loads(await response.read())


async def recv(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    message = orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    assert isinstance(message, dict)
    return message


async def until(ws: ClientConnection, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        if test(message):
            return message


async def login(mock: MockExchange, http: aiohttp.ClientSession) -> ClientConnection:
    status, tickle = await call(http, "POST", "/tickle")
    assert status == 200 and tickle["iserver"]["authStatus"]["authenticated"] is True
    assert mock.ibkr_ws_url is not None
    ws = await connect(mock.ibkr_ws_url)
    assert await recv(ws) == {"message": "waiting for session"}
    await ws.send(orjson.dumps({"session": tickle["session"]}).decode())
    assert (await recv(ws))["success"] == "mockuser1"
    assert (await recv(ws))["topic"] == "act"
    assert await recv(ws) == {"topic": "sts", "args": {"authenticated": True}}
    return ws


def test_session_message_accounts_and_l1_updates_of_changed_fields() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await login(mock, http)
        status, found = await call(http, "GET", "/trsrv/stocks", params={"symbols": "AAPL"})
        assert status == 200
        conid = found["AAPL"][0]["contracts"][0]["conid"]
        assert conid == 265598
        _, search = await call(http, "GET", "/iserver/secdef/search", params={"symbol": "AAPL"})
        assert search[0]["conid"] == "265598" and search[0]["symbol"] == "AAPL"
        await ws.send(f'smd+{conid}+{{"fields":["31","7059","84","86"]}}')
        await asyncio.sleep(0.6)
        # No /iserver/accounts yet: the gateway sends no market data.
        assert not [m for m in await drain(ws) if m.get("topic") == f"smd+{conid}"]
        status, accounts = await call(http, "GET", "/iserver/accounts")
        assert status == 200 and accounts["accounts"] == ["DU1234567"]
        first = await until(ws, lambda m: m.get("topic") == f"smd+{conid}")
        assert set(first) == {"conid", "_updated", "topic"}
        full = await until(ws, lambda m: m.get("topic") == f"smd+{conid}")
        assert {"31", "84", "86", "server_id", "6119"} <= set(full)
        assert isinstance(full["31"], str)
        later = await until(ws, lambda m: m.get("topic") == f"smd+{conid}")
        assert later["_updated"] > full["_updated"]
        assert set(later) - {"conid", "_updated", "topic", "server_id", "6119"} <= {
            "31",
            "7059",
            "84",
            "86",
        }
        await ws.close()

    run(scenario, md_interval_s=0.05)


async def drain(ws: ClientConnection) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(await recv(ws, 0.05))
        except TimeoutError:
            return out


def test_smd_subscription_expires_and_resending_renews_it() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await login(mock, http)
        await call(http, "GET", "/iserver/accounts")
        await ws.send('smd+265598+{"fields":["31","84","86"]}')
        await until(ws, lambda m: "31" in m)
        await asyncio.sleep(1.3)  # past the expiry
        await drain(ws)
        await asyncio.sleep(0.4)
        assert not [m for m in await drain(ws) if m.get("topic") == "smd+265598"]
        assert mock.ibkr is not None and mock.ibkr.status()["subscriptions_expired"] == 1
        await ws.send('smd+265598+{"fields":["31","84","86"]}')
        bare = await until(ws, lambda m: m.get("topic") == "smd+265598")
        assert set(bare) == {"conid", "_updated", "topic"}  # a new subscription starts bare
        renewed = await until(ws, lambda m: m.get("topic") == "smd+265598")
        assert {"31", "84", "86"} <= set(renewed)
        await ws.close()

    run(scenario, md_interval_s=0.05, md_expiry_s=1.0)


def test_market_order_asks_a_question_and_fills_after_the_reply() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await login(mock, http)
        await ws.send("sor+{}")
        await ws.send("str+{}")
        await call(http, "GET", "/iserver/accounts")
        order = {
            "conid": 265598,
            "cOID": "tp-1",
            "orderType": "MKT",
            "side": "BUY",
            "quantity": 2,
            "tif": "DAY",
        }
        path = "/iserver/account/DU1234567/orders"
        status, asked = await call(http, "POST", path, json={"orders": [order]})
        assert status == 200 and asked[0]["messageIds"] == ["o10151"]
        assert asked[0]["isSuppressed"] is False and isinstance(asked[0]["message"][0], str)
        status, placed = await call(
            http, "POST", f"/iserver/reply/{asked[0]['id']}", json={"confirmed": True}
        )
        assert status == 200 and placed[0]["order_status"] == "PreSubmitted"
        order_id = int(placed[0]["order_id"])
        sor = await until(ws, lambda m: m.get("topic") == "sor" and bool(m["args"]))
        assert sor["args"][0]["orderId"] == order_id
        trade = await until(ws, lambda m: m.get("topic") == "str")
        assert trade["args"][0]["order_ref"] == "tp-1" and trade["args"][0]["size"] == 2.0
        await asyncio.sleep(5.1)  # /iserver/account/orders allows one request per 5 s
        _, live = await call(http, "GET", "/iserver/account/orders")
        mine = [o for o in live["orders"] if o["order_ref"] == "tp-1"]
        assert mine and mine[0]["status"] == "Filled" and mine[0]["filledQuantity"] == 2.0
        status, again = await call(http, "POST", path, json={"orders": [order]})
        assert status == 400 and "already registered" in again["error"]
        # The same reply id cannot be answered twice.
        status, _ = await call(
            http, "POST", f"/iserver/reply/{asked[0]['id']}", json={"confirmed": True}
        )
        assert status == 400
        await ws.close()

    run(scenario)


def test_global_rate_limit_puts_the_client_in_the_penalty_box() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        statuses = [(await call(http, "GET", "/iserver/auth/status"))[0] for _ in range(11)]
        assert statuses[:10] == [200] * 10 and statuses[10] == 429
        status, body = await call(http, "GET", "/iserver/auth/status")
        assert status == 429 and body["error"] == "Too many requests"
        assert mock.ibkr is not None
        assert mock.ibkr.status()["pacing"]["penalty_violations"] == 1
        await asyncio.sleep(1.6)  # the penalty ends
        assert (await call(http, "GET", "/iserver/auth/status"))[0] == 200

    run(scenario, penalty_s=1.5)


def test_session_expires_without_tickle_and_reauthenticate_restores_it() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await login(mock, http)
        await call(http, "GET", "/iserver/accounts")
        sts = await until(ws, lambda m: m.get("topic") == "sts")
        assert sts["args"]["authenticated"] is False
        status, _ = await call(http, "GET", "/iserver/secdef/search", params={"symbol": "AAPL"})
        assert status == 401
        _, auth = await call(http, "POST", "/iserver/auth/status")
        assert auth["authenticated"] is False
        _, answer = await call(http, "POST", "/iserver/reauthenticate")
        assert answer == {"message": "triggered"}
        sts = await until(ws, lambda m: m.get("topic") == "sts")
        assert sts["args"]["authenticated"] is True
        await ws.close()

    run(scenario, session_timeout_s=1.0)


def test_api_cookie_authenticates_the_upgrade() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        _, tickle = await call(http, "POST", "/tickle")
        assert mock.ibkr_ws_url is not None
        ws = await connect(
            mock.ibkr_ws_url, additional_headers={"Cookie": f"api={tickle['session']}"}
        )
        assert (await recv(ws))["topic"] == "system"
        await ws.close()

    run(scenario)
