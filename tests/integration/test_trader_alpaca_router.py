"""Integration tests of the Alpaca router: scripted REST answers and reconciliation at the mock."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import orjson
import pytest
from aiohttp import web

from tests.integration.test_trader_alpaca import (
    KEY,
    SECRET,
    alpaca_mock,
    make_settings,
    make_signal,
    wait_event,
)
from tests.integration.test_trader_shell import owned_ledger
from tests.stages import stage_running
from tickpipe.common.errors import AmbiguousOutcome, VenueUnavailable
from tickpipe.common.schema import decode_fields
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.core import build_intent
from tickpipe.trader.shell import run
from tickpipe.trader.venue_router import VenueRouter
from tickpipe.venues.alpaca.rest import AlpacaRest, Answer
from tickpipe.venues.registry import OrderOptions, venue

ORDER = {
    "id": "0e7b2f7c-0000-4000-8000-000000000001",
    "client_order_id": "",
    "symbol": "FAKEPACA",
    "qty": "1",
    "filled_qty": "1",
    "filled_avg_price": "100",
    "type": "market",
    "side": "buy",
    "status": "filled",
    "updated_at": "2026-11-24T13:00:00Z",
}


class ScriptedRest(AlpacaRest):
    """Answer each request from a script of (method, path) -> answers; record every request."""

    def __init__(self, script: dict[tuple[str, str], list[Answer]]) -> None:
        super().__init__("http://unused", api_key="k", api_secret="s")
        self.script = script
        self.calls: list[tuple[str, str, Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        self.calls.append((method, path, body or query))
        return self.script[(method, path)].pop(0)


async def make_router(rest: AlpacaRest, redis: Any, settings: Settings) -> VenueRouter:
    counts: dict[str, int] = defaultdict(int)
    ledger = await owned_ledger(redis, settings, counts=counts)

    async def order_id_of(client_order_id: str) -> str:
        state = await ledger.order_state(client_order_id)
        return state.order_id if state is not None else ""

    options = OrderOptions(clock=time.time_ns, recv_window_ms=5000, order_id_of=order_id_of)
    orders = venue("alpaca").order_adapter(settings, rest, options)
    return VenueRouter(
        settings, ledger, orders=orders, clock=time.time_ns, counts=counts, retry_base_s=0.01
    )


def scripted_settings() -> Settings:
    return Settings(namespace="tr", instance="router-test", venue="alpaca", symbols=("FAKEPACA",))


def test_duplicate_answer_is_resolved_by_query_and_rate_limit_waits_then_sends() -> None:
    async def scenario() -> None:
        settings = scripted_settings()
        redis = fakeredis.FakeAsyncRedis()
        signal = make_signal("threshold:FAKEPACA:scripted")
        cid = client_order_id_for(signal.signal_id)
        duplicate = {"code": 40010001, "message": "client_order_id must be unique"}
        rest = ScriptedRest(
            {
                ("POST", "/v2/orders"): [
                    Answer(429, {"message": "too many requests"}, {"Retry-After": "0.05"}),
                    Answer(422, duplicate),
                ],
                ("GET", "/v2/orders:by_client_order_id"): [
                    Answer(200, {**ORDER, "client_order_id": cid})
                ],
            }
        )
        router = await make_router(rest, redis, settings)
        intent = build_intent(signal, ts_intent=time.time_ns())
        assert await router.ledger.record_intent(intent) is None
        await router.send(signal, intent)
        events = [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders("alpaca"))]
        assert [c[:2] for c in rest.calls] == [
            ("POST", "/v2/orders"),
            ("POST", "/v2/orders"),  # the 429 placed nothing: sent again
            ("GET", "/v2/orders:by_client_order_id"),  # the 422 means it exists: queried
        ]
        assert rest.calls[2][2] == {"client_order_id": cid}
        ack = events[-1]
        assert ack["event"] == "ack" and ack["source"] == "status:ambiguous"
        assert ack["status"] == "FILLED" and ack["order_id"] == ORDER["id"]
        assert router.counts["rate_limited"] == 1
        assert not await redis.smembers(settings.keys.working_orders("alpaca"))

    asyncio.run(scenario())


def test_server_errors_never_resend_blindly_a_decision_never_got_is_placed_once() -> None:
    async def scenario() -> None:
        settings = scripted_settings()
        redis = fakeredis.FakeAsyncRedis()
        signal = make_signal("threshold:FAKEPACA:lost")
        intent = build_intent(signal, ts_intent=time.time_ns() - 2_000_000_000)
        cid = intent.client_order_id
        rest = ScriptedRest(
            {
                ("POST", "/v2/orders"): [
                    Answer(503, {"message": "unavailable"}),
                    Answer(200, {**ORDER, "client_order_id": cid}),
                ],
                ("GET", "/v2/orders:by_client_order_id"): [
                    Answer(500, None),
                    Answer(404, {"code": 40410000, "message": "order not found"}),
                ],
            }
        )
        router = await make_router(rest, redis, settings)
        router.recv_window_ms = 0  # no copy of the request can arrive any more
        assert await router.ledger.record_intent(intent) is None
        await router.send(signal, intent)
        events = [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders("alpaca"))]
        # Not resent on the 503: looked up until the venue said it has no such order, then
        # placed again, once, under the same id.
        assert [c[0] for c in rest.calls] == ["POST", "GET", "GET", "POST"]
        assert [e["event"] for e in events] == ["intent", "placed_again", "ack"]
        assert router.counts["ambiguous"] == 1 and router.counts["placed_again"] == 1
        stored = orjson.loads(await redis.get(settings.keys.intent("alpaca", cid)))
        assert int(stored["placed_again_ns"]) == int(events[1]["placed_again_ns"]) > 0
        assert await router.ledger.placed_again_at(cid) == int(stored["placed_again_ns"])

    asyncio.run(scenario())


def test_a_decision_too_old_to_place_again_settles_after_the_window() -> None:
    async def scenario() -> None:
        settings = scripted_settings()
        redis = fakeredis.FakeAsyncRedis()
        signal = make_signal("threshold:FAKEPACA:old")
        rest = ScriptedRest(
            {
                ("POST", "/v2/orders"): [Answer(503, {"message": "unavailable"})],
                ("GET", "/v2/orders:by_client_order_id"): [
                    Answer(404, {"code": 40410000, "message": "order not found"}),
                ],
            }
        )
        router = await make_router(rest, redis, settings)
        router.recv_window_ms = 0
        old = time.time_ns() - int((settings.max_price_age_s + 1) * 1e9)
        intent = build_intent(signal, ts_intent=old)
        assert await router.ledger.record_intent(intent) is None
        await router.send(signal, intent)
        events = [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders("alpaca"))]
        assert [c[0] for c in rest.calls] == ["POST", "GET"]
        assert events[-1]["event"] == "not_found" and "too old to place" in events[-1]["reason"]
        assert not await redis.smembers(settings.keys.working_orders("alpaca"))

    asyncio.run(scenario())


def test_start_reconciles_open_orders_and_orphan_intents_at_the_mock(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await alpaca_mock(tmp_path / "truth.jsonl")
        try:
            settings = make_settings(mock, order_type="LIMIT")
            redis = fakeredis.FakeAsyncRedis()
            ledger = await owned_ledger(redis, settings)
            old = time.time_ns() - 10_000_000_000
            orphan = build_intent(make_signal("orphan"), ts_intent=old, order_type="LIMIT")
            resting_signal = make_signal("resting", price="1.00")
            resting = build_intent(resting_signal, ts_intent=old, order_type="LIMIT")
            for intent in (orphan, resting):
                assert await ledger.record_intent(intent) is None
            headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
            body = {"symbol": "FAKEPACA", "qty": "1", "side": "buy", "type": "limit"}
            body |= {"time_in_force": "day", "limit_price": "1.00"}
            async with aiohttp.ClientSession(headers=headers) as http:
                for cid in (resting.client_order_id, "someone-else"):
                    url = f"{mock.alpaca_rest_url}/v2/orders"
                    async with http.post(url, json={**body, "client_order_id": cid}) as answer:
                        assert answer.status == 200, await answer.text()
            await ledger.lease.release()  # the trader started now takes the account
            async with stage_running(run, settings, redis=redis):
                not_found = await wait_event(redis, settings, "not_found")
                reconciled = await wait_event(redis, settings, "reconciled")
                unknown = await wait_event(redis, settings, "discrepancy")
        finally:
            await mock.close()
        assert not_found["client_order_id"] == orphan.client_order_id
        assert reconciled["client_order_id"] == resting.client_order_id
        assert reconciled["status"] == "NEW" and reconciled["order_id"]
        events = [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders("alpaca"))]
        kinds = {(e["client_order_id"], e["kind"]) for e in events if e["event"] == "discrepancy"}
        assert ("someone-else", "unknown_open_order") in kinds, unknown
        assert (orphan.client_order_id, "orphan_intent") in kinds
        working = {m.decode() for m in await redis.smembers(settings.keys.working_orders("alpaca"))}
        assert working == {resting.client_order_id}

    asyncio.run(scenario())


def test_rest_client_translates_transport_failures() -> None:
    async def scenario() -> None:
        async def drop(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            request.transport.close()  # the request arrived; its answer never will
            return web.Response()

        async def text(request: web.Request) -> web.StreamResponse:
            assert request.headers["APCA-API-KEY-ID"] == "k"
            return web.Response(status=502, text="<html>bad gateway</html>")

        app = web.Application()
        app.router.add_post("/v2/orders", drop)
        app.router.add_get("/v2/orders", text)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        rest = AlpacaRest(f"http://127.0.0.1:{port}", api_key="k", api_secret="s")
        try:
            with pytest.raises(AmbiguousOutcome):
                await rest.request("POST", "/v2/orders", body={"symbol": "FAKEPACA"})
            answer = await rest.request("GET", "/v2/orders", query={"status": "open"})
            assert answer.status == 502 and answer.body is None
        finally:
            await rest.aclose()
            await runner.cleanup()
        closed = AlpacaRest(f"http://127.0.0.1:{port}", api_key="k", api_secret="s")
        try:
            with pytest.raises(VenueUnavailable):
                await closed.request("GET", "/v2/orders")
        finally:
            await closed.aclose()

    asyncio.run(scenario())
