"""Integration test of the Ed25519 logged-on session against an in-process WebSocket API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from websockets.asyncio.server import ServerConnection, serve

from tests.integration.test_trader_shell import Harness, make_settings, make_signal, seed_market
from tickpipe.common.errors import AuthError
from tickpipe.common.settings import Secret, Settings
from tickpipe.trader.shell import run
from tickpipe.venues.binance.wire import ws_api_payload

PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
SEED_B64 = base64.b64encode(bytes(range(1, 33))).decode()


def _error(request_id: Any, code: int, msg: str) -> dict[str, Any]:
    return {"id": request_id, "status": 401, "error": {"code": code, "msg": msg}}


class LogonVenue:
    """Accept orders only on a connection whose session.logon verified with the public key."""

    def __init__(self, public_key: Any) -> None:
        self.public_key = public_key
        self.methods: list[str] = []
        self.unsigned_orders = 0

    async def handler(self, ws: ServerConnection) -> None:
        logged_on = False
        async for message in ws:
            request = orjson.loads(message)
            method, params = request["method"], request.get("params", {})
            self.methods.append(method)
            answer: dict[str, Any] = {"id": request["id"], "status": 200}
            if method == "session.logon":
                try:
                    signature = base64.b64decode(params["signature"])
                    self.public_key.verify(signature, ws_api_payload(params).encode())
                    logged_on = True
                    answer["result"] = {"apiKey": params["apiKey"], "authorizedSince": 1}
                except Exception:
                    answer = _error(
                        request["id"], -1022, "Signature for this request is not valid."
                    )
            elif not logged_on or "signature" in params or "timestamp" not in params:
                answer = _error(request["id"], -2015, "Invalid API-key, IP, or permissions.")
            elif method == "order.place":
                self.unsigned_orders += 1
                qty = params["quantity"]
                answer["result"] = {
                    "orderId": 1,
                    "clientOrderId": params["newClientOrderId"],
                    "status": "FILLED",
                    "executedQty": qty,
                    "origQty": qty,
                    "cummulativeQuoteQty": "61.8",
                }
            elif method == "openOrders.status":
                answer["result"] = []
            else:
                answer["result"] = {}
            await ws.send(orjson.dumps(answer).decode())


@contextlib.asynccontextmanager
async def ed25519_venue(public_key: Ed25519PublicKey) -> AsyncIterator[tuple[LogonVenue, Settings]]:
    """Serve a LogonVenue that knows ``public_key``; yield it and a trader's settings for it."""
    venue = LogonVenue(public_key)
    async with serve(venue.handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield (
            venue,
            make_settings(
                binance_key_type="ed25519",
                binance_api_secret=Secret(SEED_B64),
                binance_ws_api_url=f"ws://127.0.0.1:{port}/ws-api/v3",
            ),
        )


def test_ed25519_session_logs_on_once_then_orders_go_unsigned() -> None:
    async def scenario() -> None:
        async with ed25519_venue(PRIVATE.public_key()) as (venue, settings):
            h = Harness(None, settings)  # type: ignore[arg-type]  # the trader's own client
            await h.start_acked(make_signal(1))
            await h.finish()
        methods = [m for m in venue.methods if m != "time"]  # venue clock samples
        assert methods[0] == "session.logon" and methods.count("session.logon") == 1
        assert venue.unsigned_orders == 1

    asyncio.run(scenario())


def test_a_key_the_venue_refuses_stops_the_trader_with_a_clear_error() -> None:
    async def scenario() -> None:
        another_key = Ed25519PrivateKey.generate().public_key()
        async with ed25519_venue(another_key) as (_, settings):
            redis = fakeredis.FakeAsyncRedis()
            await seed_market(redis, settings, "BTCUSDT", make_signal(1).price)
            await redis.xadd(
                settings.keys.signals(next(iter(settings.partitions()))), make_signal(1).to_fields()
            )
            with pytest.raises(AuthError, match=r"session\.logon refused") as caught:
                await asyncio.wait_for(run(settings, asyncio.Event(), redis=redis), 10)
        assert SEED_B64 not in str(caught.value)

    asyncio.run(scenario())
