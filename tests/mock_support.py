"""Helpers for tests that drive the mock exchange in-process: a runner, a manual clock, waits,
and a raw client's side of the Binance WebSocket API (JSON frames, signed requests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection

from tests.waits import until
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

Scenario = Callable[[MockExchange], Awaitable[None]]


class ManualClock:
    """The mock's clock (integer ns): it moves only when the test sets ``ns``."""

    def __init__(self, ns: int | None = None) -> None:
        self.ns = time.time_ns() if ns is None else ns

    def __call__(self) -> int:
        return self.ns


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    await until(condition, timeout_s, what)


def run_scenario(scenario: Scenario, *, timeout_s: float, **mock_kw: Any) -> None:
    """Start a mock with ``mock_kw``, run ``scenario`` on it within ``timeout_s``, close it."""

    async def main() -> None:
        mock = await start_mock(**mock_kw)
        try:
            await asyncio.wait_for(scenario(mock), timeout_s)
        finally:
            await mock.close()

    asyncio.run(main())


def apply_levels(book: dict[Decimal, Decimal], levels: list[list[str]]) -> None:
    """Apply depth ``levels`` (``[price, qty]``; qty 0 removes) to ``book`` as a client does."""
    for price, qty in levels:
        if Decimal(qty) == 0:
            book.pop(Decimal(price), None)
        else:
            book[Decimal(price)] = Decimal(qty)


async def recv_json(ws: ClientConnection, wait_s: float = 3.0) -> Any:
    """Read one JSON frame, waiting at most ``wait_s``."""
    return orjson.loads(await asyncio.wait_for(ws.recv(), wait_s))


async def recv_until(ws: ClientConnection, accept: Callable[[Any], bool]) -> Any:
    """Read frames until one satisfies ``accept`` (the caller's wait_for bounds it)."""
    while True:
        message = await recv_json(ws)
        if accept(message):
            return message


async def request(ws: ClientConnection, rid: Any, method: str, params: Any = None) -> Any:
    """Send one WebSocket API request; return the answer that carries its id ``rid``."""
    body: dict[str, Any] = {"id": rid, "method": method}
    if params is not None:
        body["params"] = params
    await ws.send(orjson.dumps(body).decode())
    return await recv_until(ws, lambda m: isinstance(m, dict) and m.get("id") == rid)


def signed(
    params: dict[str, Any], *, key: str = "mock-key", secret: str = "mock-secret", age_ms: int = 0
) -> dict[str, Any]:
    """Return ``params`` with the API key, a timestamp ``age_ms`` old and their HMAC signature."""
    out = {"apiKey": key, "timestamp": time.time_ns() // 1_000_000 - age_ms, **params}
    out["signature"] = hmac_signature(secret, ws_api_payload(out))
    return out


def market_order(cid: str, **extra: Any) -> dict[str, Any]:
    """Return the parameters of a market buy of 0.001 BTCUSDT as ``cid`` (``extra`` added)."""
    return {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "MARKET",
        "quantity": "0.001",
        "newClientOrderId": cid,
        **extra,
    }
