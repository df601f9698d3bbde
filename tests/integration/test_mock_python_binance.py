"""Integration test: the python-binance library from PyPI, unmodified, against the mock.

Only its documented URL attributes are pointed at loopback: ``AsyncClient.API_URL`` (REST),
``BinanceSocketManager.STREAM_URL`` (market streams) and the client's WebSocket API connection
(``client.ws_api``), which carries the user-data subscription. Its read-loop ``TIMEOUT`` is
lowered so that closing it takes one second instead of ten.
"""

from __future__ import annotations

import asyncio
import warnings
from decimal import Decimal
from typing import Any

import pytest

from tickpipe.mock_ws import start_mock

with warnings.catch_warnings():
    # python-binance imports names websockets deprecates; that is the library's business.
    warnings.simplefilter("ignore", DeprecationWarning)
    from binance import AsyncClient, BinanceSocketManager
    from binance.ws.websocket_api import WebsocketAPI

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def next_report(user: Any, wanted: str) -> dict[str, Any]:
    while True:
        message = await asyncio.wait_for(user.recv(), 5)
        if message.get("e") == "executionReport" and message.get("x") == wanted:
            return dict(message)


def test_python_binance_streams_trades_places_and_cancels() -> None:
    async def scenario() -> None:
        mock = await start_mock(trades_per_s=50.0)
        client = AsyncClient("mock-key", "mock-secret")
        try:
            client.API_URL = f"{mock.rest_url}/api"
            client.ws_api = WebsocketAPI(url=mock.ws_api_url)
            client.ws_api.TIMEOUT = 1  # its read loop notices a close within this many seconds
            manager = BinanceSocketManager(client)
            manager.STREAM_URL = f"{mock.ws_url}/"
            assert (await client.get_server_time())["serverTime"] > 0
            depth = await client.get_order_book(symbol="BTCUSDT", limit=5)
            assert len(depth["bids"]) == 5 and depth["lastUpdateId"] > 0
            async with manager.trade_socket("BTCUSDT") as trades:
                first = await asyncio.wait_for(trades.recv(), 5)
                second = await asyncio.wait_for(trades.recv(), 5)
            assert first["e"] == "trade" and first["s"] == "BTCUSDT"
            assert second["t"] == first["t"] + 1
            async with manager.user_socket() as user:
                price = Decimal(mock.market.last_price("BTCUSDT")) / 2
                order = await client.create_order(
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity="0.01",
                    price=f"{price:.2f}",
                    newClientOrderId="pb-1",
                )
                assert order["status"] == "NEW" and order["clientOrderId"] == "pb-1"
                new = await next_report(user, "NEW")
                assert new["c"] == "pb-1" and new["i"] == order["orderId"]
                opened = await client.get_open_orders(symbol="BTCUSDT")
                assert [o["orderId"] for o in opened] == [order["orderId"]]
                cancelled = await client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
                assert cancelled["status"] == "CANCELED"
                report = await next_report(user, "CANCELED")
                assert report["C"] == "pb-1" and report["X"] == "CANCELED"
            account = await client.get_account()
            assert {b["asset"] for b in account["balances"]} >= {"BTC", "USDT"}
        finally:
            await client.close_connection()
            await client.ws_api.close()
            await mock.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
