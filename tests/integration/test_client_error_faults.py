"""Each client's default ``handle_websocket_error`` on faults the mock makes for real.

A recording subclass keeps what the client's own policy decided for each error (a delay, or the
exception it raised) without changing it. Per venue: a dropped connection is reopened after a
delay within the backoff's ceiling and data flows again; a rate limit met while reopening (a
WebSocket API 429 on Binance, another session holding Alpaca's one data slot: 406, a gateway 429
on IBKR) waits at least what the venue asked; a key the venue stops accepting (Alpaca) ends the
consumer's iteration with :class:`AuthError`, and ``close()`` completes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AuthError, RateLimited
from tickpipe.common.schema import Event, OrderUpdate, Trade
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.ibkr.client import IbkrClient
from tickpipe.venues.ibkr.pacing import RestBudget

KEY, SECRET = "mock-key", "mock-secret"
Verdict = tuple[BaseException, float | BaseException]


def record(verdicts: list[Verdict], decide: Callable[[BaseException], float], error: Any) -> float:
    """Keep the default policy's verdict on ``error``, and return or raise it unchanged."""
    try:
        delay = decide(error)
    except BaseException as fatal:
        verdicts.append((error, fatal))
        raise
    verdicts.append((error, delay))
    return delay


class RecordingBinance(BinanceClient):
    verdicts: list[Verdict]

    def handle_websocket_error(self, error: BaseException) -> float:
        return record(self.verdicts, super().handle_websocket_error, error)


class RecordingAlpaca(AlpacaClient):
    verdicts: list[Verdict]

    def handle_websocket_error(self, error: BaseException) -> float:
        return record(self.verdicts, super().handle_websocket_error, error)


class RecordingIbkr(IbkrClient):
    verdicts: list[Verdict]

    def handle_websocket_error(self, error: BaseException) -> float:
        return record(self.verdicts, super().handle_websocket_error, error)


class Highest(random.Random):
    """Jitter that always takes the ceiling: the first reconnect waits exactly ``base_s``."""

    def uniform(self, a: float, b: float) -> float:
        return b


def recording(client: Any) -> Any:
    client.verdicts = []
    return client


async def next_of(client: Any, cls: type[Event], test: Callable[[Any], bool]) -> Any:
    async for event in client.process_incoming_data():
        if isinstance(event, cls) and test(event):
            return event
    raise AssertionError("the client ended before the expected event")


def run(scenario: Any, **options: Any) -> None:
    async def main() -> None:
        async with await start_mock(trades_per_s=50, **options) as mock:
            await asyncio.wait_for(scenario(mock), 60)

    asyncio.run(main())


# -- Binance ---------------------------------------------------------------------------------------
def binance(mock: MockExchange) -> RecordingBinance:
    backoff = Backoff(base_s=0.05, cap_s=0.05)
    client = RecordingBinance(
        mock.ws_url, mock.ws_api_url, mock.rest_url, KEY, SECRET, backoff=backoff
    )
    return recording(client)  # type: ignore[no-any-return]


def test_binance_drop_and_a_rate_limit_while_reopening() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with binance(mock) as client:
            await client.subscribe_to_ticker("BTCUSDT", channels=("trade",))
            await client.subscribe_to_order_updates()
            first = await next_of(client, Trade, lambda t: True)
            await mock.inject({"type": "drop", "kind": "stream"})
            await next_of(client, Trade, lambda t: client.reconnects == 1)
            [(_, delay)] = client.verdicts
            assert isinstance(delay, float) and 0 <= delay <= 0.05
            # the private connection drops while the WebSocket API answers 429 for a second
            await mock.inject({"type": "rate_limit", "scope": "ws_api", "retry_after": 1})
            await mock.inject({"type": "drop", "kind": "api"})
            await until(lambda: client.reconnects == 2, timeout_s=20, what="the private reopened")
            limited = [(e, d) for e, d in client.verdicts if isinstance(e, RateLimited)]
            assert limited, client.verdicts
            for error, waited in limited:
                assert isinstance(waited, float) and waited >= error.retry_after_s > 0
            order = await client.place_order("BTCUSDT", "BUY", "0.001", client_order_id="after")
            update = await next_of(client, OrderUpdate, lambda u: u.status == "FILLED")
            assert update.client_order_id == order.client_order_id == "after"
            assert client.errors == len(client.verdicts) and int(first.trade_id) > 0

    run(scenario, binance_port=0, api_key=KEY, api_secret=SECRET)


# -- Alpaca ----------------------------------------------------------------------------------------
CRYPTO_DATA = "/v1beta3/crypto/us"


def alpaca(mock: MockExchange, base_s: float = 0.05) -> RecordingAlpaca:
    assert mock.alpaca_data_url and mock.alpaca_trading_url and mock.alpaca_rest_url
    backoff = Backoff(base_s=base_s, cap_s=max(base_s, 0.05), rng=Highest())
    client = RecordingAlpaca(
        mock.alpaca_data_url,
        mock.alpaca_trading_url,
        mock.alpaca_rest_url,
        KEY,
        SECRET,
        feed="crypto",
        backoff=backoff,
    )
    return recording(client)  # type: ignore[no-any-return]


async def drop_alpaca_data(mock: MockExchange) -> None:
    assert mock.alpaca is not None
    for conn in list(mock.alpaca.connections.values()):
        if conn.data is not None:
            await conn.ws.close(code=1011, message=b"test drop")


def test_alpaca_drop_and_another_session_holding_the_data_slot() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.alpaca is not None
        registry = mock.alpaca.registry
        async with alpaca(mock, base_s=0.3) as client:
            await client.subscribe_to_ticker("BTC/USD")
            await next_of(client, Trade, lambda t: True)
            await drop_alpaca_data(mock)
            # Another program with the same key takes the one data slot the moment it is free
            # (the client waits 0.3 s before reopening): the client's reopen is refused, 406.
            await until(
                lambda: (
                    registry.count(CRYPTO_DATA, KEY) == 0
                    and registry.acquire(CRYPTO_DATA, KEY, conn_id=-1)
                ),
                timeout_s=5,
                what="the slot freed and taken",
            )
            await until(lambda: len(client.verdicts) == 2, timeout_s=10, what="the 406")
            (_, dropped), (limited, waited) = client.verdicts
            assert isinstance(dropped, float) and dropped == pytest.approx(0.3)
            assert isinstance(limited, RateLimited) and limited.code == 406
            assert isinstance(waited, float) and waited >= limited.retry_after_s > 0
            registry.release(-1)  # the other program stops: the client gets the slot back
            await next_of(client, Trade, lambda t: client.reconnects == 1)
            assert client.errors == 2

    run(scenario, alpaca_port=0)


def test_alpaca_a_key_the_venue_stops_accepting_ends_the_iteration() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.alpaca is not None
        client = alpaca(mock)
        try:
            await client.connect_to_websocket()
            await client.subscribe_to_ticker("BTC/USD")
            await next_of(client, Trade, lambda t: True)
            mock.alpaca.credentials[KEY] = "rotated-secret"  # the key pair is rotated
            await drop_alpaca_data(mock)
            with pytest.raises(AuthError, match="ALPACA_API_KEY"):
                async for _ in client.process_incoming_data():
                    pass
            [(_, dropped), (refused, raised)] = client.verdicts
            assert isinstance(dropped, float)
            assert isinstance(refused, AuthError) and raised is refused
            assert client.reconnects == 0
        finally:
            await asyncio.wait_for(client.close(), 10)

    run(scenario, alpaca_port=0)


# -- IBKR ------------------------------------------------------------------------------------------
def ibkr(mock: MockExchange) -> RecordingIbkr:
    assert mock.ibkr_rest_url and mock.ibkr_ws_url
    client = RecordingIbkr(
        mock.ibkr_rest_url,
        mock.ibkr_ws_url,
        budget=RestBudget(penalty_s=0.5),
        backoff=Backoff(base_s=0.05, cap_s=0.05),
    )
    return recording(client)  # type: ignore[no-any-return]


def test_ibkr_drop_and_a_gateway_429_while_reopening() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with ibkr(mock) as client:
            await client.subscribe_to_ticker("AAPL")
            await client.authenticate_websocket()
            await next_of(client, Trade, lambda t: True)
            await mock.inject({"type": "drop", "path": "/v1/api/ws"})
            await until(lambda: client.verdicts, timeout_s=10, what="the drop")
            await next_of(client, Trade, lambda t: True)
            [(_, delay)] = client.verdicts
            assert isinstance(delay, float) and 0 <= delay <= 0.05
            # the socket drops while the gateway answers 429 to REST for a moment
            await mock.inject({"type": "rate_limit", "scope": "rest", "duration": 2})
            await mock.inject({"type": "drop", "path": "/v1/api/ws"})
            await until(lambda: len(client.verdicts) >= 3, timeout_s=10, what="the 429")
            limited = [(e, d) for e, d in client.verdicts if isinstance(e, RateLimited)]
            assert limited, client.verdicts
            for error, waited in limited:
                assert isinstance(waited, float) and waited >= error.retry_after_s > 0
            await next_of(client, Trade, lambda t: True)  # streaming again

    run(scenario, ibkr_port=0, ibkr_options={"md_interval_s": 0.05})
