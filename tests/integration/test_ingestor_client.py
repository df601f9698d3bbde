"""Integration tests of the embeddable venue client against the in-process mock exchange."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from websockets.asyncio.client import connect

from common.backoff import Backoff
from common.errors import AuthError, RateLimited
from common.schema import Event, OrderUpdate, Quote, Trade
from mock_ws import MockExchange, start_mock
from venues.binance.client import BinanceClient
from venues.binance.wire import hmac_signature, ws_api_payload

KEY, SECRET = "client-key", "client-secret"


async def place_market_order(mock: MockExchange) -> None:
    params: dict[str, object] = {
        "apiKey": KEY,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.001",
        "newClientOrderId": "client-test-1",
        "timestamp": time.time_ns() // 1_000_000,
    }
    params["signature"] = hmac_signature(SECRET, ws_api_payload(params))
    async with connect(mock.ws_api_url) as ws:
        await ws.send(orjson.dumps({"id": 1, "method": "order.place", "params": params}))
        answer = orjson.loads(await ws.recv())
        assert answer["status"] == 200, answer


def client_for(mock: MockExchange, secret: str = SECRET) -> BinanceClient:
    return BinanceClient(
        mock.ws_url,
        mock.ws_api_url,
        mock.rest_url,
        KEY,
        secret,
        backoff=Backoff(base_s=0.01, cap_s=0.05),
    )


def test_client_yields_trades_quotes_and_order_updates() -> None:
    async def scenario() -> list[Event]:
        mock = await start_mock(binance_port=0, trades_per_s=50, api_key=KEY, api_secret=SECRET)
        got: list[Event] = []
        async with mock, client_for(mock) as client:
            await client.subscribe_to_ticker("BTCUSDT")
            await client.subscribe_to_order_updates()
            await place_market_order(mock)
            deadline = time.monotonic() + 8
            async for event in client.process_incoming_data():
                got.append(event)
                kinds = {type(e) for e in got}
                if {Trade, Quote, OrderUpdate} <= kinds or time.monotonic() > deadline:
                    break
        return got

    got = asyncio.run(scenario())
    trades = [e for e in got if isinstance(e, Trade)]
    quotes = [e for e in got if isinstance(e, Quote)]
    orders = [e for e in got if isinstance(e, OrderUpdate)]
    assert trades and all(t.symbol == "BTCUSDT" and t.venue == "binance" for t in trades)
    assert quotes and float(quotes[0].bid_price) <= float(quotes[0].ask_price)
    assert orders and orders[0].client_order_id == "client-test-1"


def test_client_reconnects_after_a_drop_and_resubscribes() -> None:
    async def scenario() -> tuple[int, int]:
        mock = await start_mock(binance_port=0, trades_per_s=50, api_key=KEY, api_secret=SECRET)
        count = 0
        async with mock, client_for(mock) as client:
            await client.subscribe_to_ticker("ETHUSDT")
            seen_after_drop = 0
            async for event in client.process_incoming_data():
                if not isinstance(event, Trade):
                    continue
                count += 1
                if count == 5:
                    await mock.inject({"type": "drop", "kind": "stream"})
                if client.errors:
                    seen_after_drop += 1
                if seen_after_drop >= 5:
                    break
            return client.errors, seen_after_drop

    errors, after = asyncio.run(scenario())
    assert errors == 1 and after >= 5


def test_a_rejected_key_raises_auth_error_once() -> None:
    async def scenario() -> None:
        mock = await start_mock(binance_port=0, api_key=KEY, api_secret=SECRET)
        async with mock, client_for(mock, secret="wrong") as client:
            with pytest.raises(AuthError, match="BINANCE_API_KEY"):
                await client.authenticate_websocket()

    asyncio.run(scenario())


def test_handle_websocket_error_backs_off_and_honours_rate_limits() -> None:
    client = BinanceClient("ws://x", "ws://x/ws-api/v3", "http://x", backoff=Backoff(cap_s=0.5))
    assert 0 <= client.handle_websocket_error(OSError("reset")) <= 0.5
    assert client.handle_websocket_error(RateLimited("slow down", retry_after_s=3.0)) >= 3.0
    with pytest.raises(AuthError):
        client.handle_websocket_error(AuthError("bad key"))
