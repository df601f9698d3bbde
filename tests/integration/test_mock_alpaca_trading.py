"""Integration tests: Alpaca REST and the trading stream with raw HTTP/WebSocket clients."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock

HEADERS = {"APCA-API-KEY-ID": "mock-key", "APCA-API-SECRET-KEY": "mock-secret"}
LEGACY_AUTH = {
    "action": "authenticate",
    "data": {"key_id": "mock-key", "secret_key": "mock-secret"},
}
LISTEN = {"action": "listen", "data": {"streams": ["trade_updates"]}}
Scenario = Callable[[MockExchange, aiohttp.ClientSession], Awaitable[None]]


def run(scenario: Scenario, **kwargs: Any) -> None:
    async def main() -> None:
        mock = await start_mock(alpaca_hours="always", alpaca_port=0, trades_per_s=40.0, **kwargs)
        try:
            async with aiohttp.ClientSession(
                base_url=f"{mock.alpaca_rest_url}/", headers=HEADERS
            ) as http:
                await asyncio.wait_for(scenario(mock, http), 9)
        finally:
            await mock.close()

    asyncio.run(main())


async def recv(ws: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.recv(), 3.0)
    assert isinstance(frame, bytes), "the trading stream sends binary frames"
    decoded = orjson.loads(frame)
    assert isinstance(decoded, dict)
    return decoded


async def update(ws: ClientConnection, event: str) -> dict[str, Any]:
    while True:
        message = await recv(ws)
        if message.get("stream") == "trade_updates" and message["data"]["event"] == event:
            data: dict[str, Any] = message["data"]
            return data


async def trading_stream(mock: MockExchange) -> ClientConnection:
    assert mock.alpaca_trading_url is not None
    ws = await connect(mock.alpaca_trading_url)
    await ws.send(orjson.dumps(LEGACY_AUTH).decode())
    assert await recv(ws) == {
        "stream": "authorization",
        "data": {"status": "authorized", "action": "authenticate"},
    }
    await ws.send(orjson.dumps(LISTEN).decode())
    assert await recv(ws) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    return ws


async def post_order(http: aiohttp.ClientSession, **fields: Any) -> tuple[int, Any]:
    body = {"symbol": "FAKEPACA", "qty": "1", "side": "buy", "type": "market",
            "time_in_force": "day", **fields}  # fmt: skip
    async with http.post("v2/orders", json=body) as response:
        return response.status, await response.json()


def test_rest_requires_keys() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        async with aiohttp.ClientSession() as bare:
            response = await bare.get(f"{mock.alpaca_rest_url}/v2/account")
            assert response.status == 401
            assert await response.json() == {
                "code": 40110000,
                "message": "request is not authorized",
            }

    run(scenario)


def test_place_cancel_and_trade_updates(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await trading_stream(mock)
        try:
            status, order = await post_order(
                http, type="limit", limit_price="1.00", client_order_id="raw-1"
            )
            assert status == 200 and order["status"] == "accepted"
            new = await update(ws, "new")
            assert new["order"]["id"] == order["id"] and new["timestamp"].endswith("Z")
            async with http.delete(f"v2/orders/{order['id']}") as response:
                assert response.status == 204 and await response.read() == b""
            canceled = await update(ws, "canceled")
            assert canceled["order"]["status"] == "canceled"
            async with http.delete(f"v2/orders/{order['id']}") as response:
                assert response.status == 422
            async with http.delete("v2/orders/00000000-0000-4000-8000-000000000000") as response:
                assert response.status == 404
            status, body = await post_order(http, client_order_id="raw-1")
            assert (status, body) == (
                422,
                {"code": 40010001, "message": "client_order_id must be unique"},
            )
            async with http.get(
                "v2/orders:by_client_order_id", params={"client_order_id": "raw-1"}
            ) as response:
                assert (await response.json())["status"] == "canceled"
            async with http.get("v2/orders", params={"status": "closed"}) as response:
                assert [o["id"] for o in await response.json()] == [order["id"]]
        finally:
            await ws.close()
        gt = read_ground_truth(truth)
        assert [e["accepted"] for e in gt.events("alpaca_order")] == [True, False]
        assert [e["event"] for e in gt.events("alpaca_trade_update")] == ["new", "canceled"]

    run(scenario, ground_truth_path=str(truth))


def test_market_fill_updates_positions_and_account() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await trading_stream(mock)
        try:
            status, order = await post_order(http, symbol="AAPL", qty="3")
            assert status == 200
            fill = await update(ws, "fill")
            assert fill["order"]["id"] == order["id"] and fill["qty"] == "3"
            assert fill["position_qty"] == "3" and fill["execution_id"]
            price = Decimal(fill["price"])
            async with http.get("v2/positions") as response:
                [position] = await response.json()
            assert position["symbol"] == "AAPL" and position["qty"] == "3"
            assert Decimal(position["avg_entry_price"]) == price
            async with http.get("v2/account") as response:
                account = await response.json()
            assert Decimal(account["cash"]) == Decimal(100000) - 3 * price
        finally:
            await ws.close()

    run(scenario)


def test_resting_limit_fills_when_the_price_crosses() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        ws = await trading_stream(mock)
        try:
            last = Decimal(mock.alpaca.sim.last_price("FAKEPACA"))  # type: ignore[union-attr]
            status, order = await post_order(
                http, type="limit", limit_price=str(last - Decimal("0.01")), qty="1"
            )
            assert status == 200
            await update(ws, "new")
            fill = await update(ws, "fill")
            assert fill["order"]["id"] == order["id"]
            assert Decimal(fill["price"]) == last - Decimal("0.01")
        finally:
            await ws.close()

    run(scenario)


def test_replace_expire_and_reject_events_in_msgpack_mode() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        assert mock.alpaca_trading_url is not None
        headers = {"Content-Type": "application/msgpack"}
        async with connect(mock.alpaca_trading_url, additional_headers=headers) as ws:
            await ws.send(
                msgpack.packb({"action": "auth", "key": "mock-key", "secret": "mock-secret"})
            )
            assert msgpack.unpackb(await ws.recv())["data"]["status"] == "authorized"
            await ws.send(msgpack.packb(LISTEN))
            assert msgpack.unpackb(await ws.recv())["stream"] == "listening"

            async def next_event() -> dict[str, Any]:
                message = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 3.0))
                return dict(message["data"])

            _, order = await post_order(http, type="limit", limit_price="1.00")
            assert (await next_event())["event"] == "new"
            async with http.patch(f"v2/orders/{order['id']}", json={"limit_price": "2"}) as r:
                replacement = await r.json()
            assert replacement["replaces"] == order["id"]
            replaced = await next_event()
            assert replaced["event"] == "replaced" and replaced["order"]["id"] == order["id"]
            assert (await next_event())["order"]["id"] == replacement["id"]
            async with http.post("_mock/alpaca/expire") as r:
                assert (await r.json()) == {"expired": 1}
            expired = await next_event()
            assert expired["event"] == "expired" and expired["order"]["expired_at"]
            async with http.post("_mock/alpaca/reject_next") as r:
                assert r.status == 200
            status, rejected_order = await post_order(http)
            assert status == 200
            rejected = await next_event()
            assert rejected["event"] == "rejected"
            assert rejected["order"]["id"] == rejected_order["id"]

    run(scenario)


def test_historical_data_from_the_simulation() -> None:
    async def scenario(mock: MockExchange, http: aiohttp.ClientSession) -> None:
        alpaca = mock.alpaca
        assert alpaca is not None
        deadline = asyncio.get_running_loop().time() + 5
        while len(alpaca.market.history_trades("AAPL")) < 3:
            assert asyncio.get_running_loop().time() < deadline, "no AAPL trades"
            await asyncio.sleep(0.02)
        async with http.get("v2/stocks/AAPL/trades", params={"limit": "2"}) as response:
            page = await response.json()
        assert page["symbol"] == "AAPL" and len(page["trades"]) == 2
        assert page["next_page_token"] is not None
        assert set(page["trades"][0]) == {"t", "x", "p", "s", "c", "i", "z"}
        async with http.get("v2/stocks/AAPL/bars", params={"timeframe": "1Min"}) as response:
            bars = await response.json()
        assert bars["bars"] and set(bars["bars"][0]) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
        async with http.get("v2/stocks/bars", params={"symbols": "AAPL,FAKEPACA"}) as response:
            multi = await response.json()
        assert set(multi["bars"]) == {"AAPL", "FAKEPACA"}

    run(scenario)
