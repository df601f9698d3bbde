"""Integration tests of the trader's WebSocket API client against an in-process server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.ports import free_port
from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AmbiguousOutcome, VenueUnavailable
from tickpipe.venues.binance.ws_api import BinanceWsApi


class Server:
    """Answer by what ``params["do"]`` says: echo, stay silent, drop, or answer late."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.held: list[tuple[ServerConnection, dict[str, Any]]] = []
        self.got_one = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        async for message in ws:
            request = orjson.loads(message)
            self.received.append(request)
            self.got_one.set()
            do = request["params"].get("do", "echo")
            answer = {"id": request["id"], "status": 200, "result": request["params"]}
            if do == "limits":  # answer with the rate limits the request asks for
                answer["rateLimits"] = request["params"]["limits"]
                answer.update(request["params"].get("answer", {}))
            if do == "drop":
                await ws.close()
                return
            if do == "hold":  # answered after the next request
                self.held.append((ws, answer))
                continue
            if do in ("echo", "limits"):
                await ws.send(orjson.dumps({"id": "not-ours", "status": 200, "result": {}}))
                await ws.send(orjson.dumps(answer))
                for held_ws, held in self.held:
                    await held_ws.send(orjson.dumps(held))
                self.held.clear()
            # "silent": never answer


def client(url: str, **kw: Any) -> BinanceWsApi:
    return BinanceWsApi(url, backoff=Backoff(base_s=0.01, cap_s=0.05), **kw)


@contextlib.asynccontextmanager
async def served(path: str = "", **kw: Any) -> AsyncIterator[tuple[Server, BinanceWsApi]]:
    """Serve a :class:`Server` and yield it with a client of its URL (``path`` appended)."""
    server = Server()
    async with serve(server.handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        api = client(f"ws://127.0.0.1:{port}{path}", **kw)
        try:
            yield server, api
        finally:
            await api.aclose()


def test_answers_are_matched_to_requests_by_id_on_one_connection() -> None:
    async def scenario() -> None:
        async with served("/ws-api/v3") as (server, api):
            held = asyncio.create_task(api.status({"do": "hold", "n": 1}))
            await asyncio.wait_for(server.got_one.wait(), 5)
            first = await api.place({"do": "echo", "n": 2})
            assert first["result"] == {"do": "echo", "n": 2}
            assert (await held)["result"] == {"do": "hold", "n": 1}
            # The venue clock is sampled with ``time`` requests on connect, before anything else.
            methods = [r["method"] for r in server.received]
            assert methods[:4] == ["time"] * 4
            assert methods[4:] == ["order.status", "order.place"]
            assert len({r["id"] for r in server.received}) == 6
            assert api.connects == 1

    asyncio.run(scenario())


def test_no_answer_in_time_is_ambiguous() -> None:
    async def scenario() -> None:
        async with served(request_timeout_s=0.2) as (_, api):
            with pytest.raises(AmbiguousOutcome, match="no answer"):
                await api.place({"do": "silent"})
            assert (await api.place({"do": "echo"}))["status"] == 200  # still usable

    asyncio.run(scenario())


def test_dropped_connection_is_ambiguous_and_the_next_request_reconnects() -> None:
    async def scenario() -> None:
        async with served(request_timeout_s=5) as (_, api):
            with pytest.raises(AmbiguousOutcome):
                await api.place({"do": "drop"})
            assert (await api.status({"do": "echo"}))["status"] == 200
            assert api.connects == 2

    asyncio.run(scenario())


def test_unreachable_venue_means_not_sent() -> None:
    async def scenario() -> None:
        port = free_port()  # nothing listens there
        api = client(f"ws://127.0.0.1:{port}", connect_timeout_s=0.3)
        with pytest.raises(VenueUnavailable, match="cannot connect"):
            await api.place({"do": "echo"})
        await api.aclose()

    asyncio.run(scenario())


def test_full_order_window_holds_orders_and_a_429_holds_every_request() -> None:
    async def scenario() -> None:
        async with served() as (_, api):
            orders = {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                      "limit": 50, "count": 50}  # fmt: skip
            await api.place({"do": "limits", "limits": [orders]})
            assert 0 < api.hold_s("order.place") <= 10 and api.hold_s("order.status") == 0
            retry_at = time.time_ns() // 1_000_000 + 300
            banned = {"status": 429, "error": {"code": -1003, "msg": "Too many requests.",
                                                "data": {"retryAfter": retry_at}}}  # fmt: skip
            await api.status({"do": "limits", "limits": [], "answer": banned})
            assert 0.1 < api.hold_s("order.status") <= 0.3
            started = time.monotonic()
            assert (await api.status({"do": "echo"}))["status"] == 200
            assert time.monotonic() - started >= 0.2  # waited before sending

    asyncio.run(scenario())
