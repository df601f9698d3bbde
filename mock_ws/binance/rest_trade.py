"""Serve Binance's signed REST trading endpoints and the legacy listenKey endpoints.

``POST/DELETE/GET /api/v3/order``, ``POST /api/v3/order/test``, ``GET/DELETE
/api/v3/openOrders``, ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades`` and ``GET
/api/v3/account`` are SIGNED: ``X-MBX-APIKEY`` header, ``timestamp``/``recvWindow`` and an
HMAC-SHA256 ``signature`` over the query string concatenated with the form body, as sent.
User-data events go to every WebSocket API session with a subscription and every
``/ws/<listenKey>`` connection.
``POST/PUT/DELETE /api/v3/userDataStream`` need only the API key header.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from aiohttp import web

from tickpipe.mock_ws.binance.auth import AccountKeys
from tickpipe.mock_ws.binance.control import order_error
from tickpipe.mock_ws.binance.rest_market import unknown_path
from tickpipe.mock_ws.binance.ws_api import order_record, record_placed
from tickpipe.mock_ws.faults import FaultPlan
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.history import (
    all_orders,
    my_trades,
    open_orders,
    order_status,
    test_order_result,
)
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected

__all__ = ["RestTrading"]

Events = list[dict[str, Any]]


class _Host(Protocol):
    engine: MatchingEngine
    ground_truth: GroundTruthWriter
    clock: Callable[[], int]

    def publish_user_events(self, events: Events) -> None: ...


def _error(exc: OrderRejected) -> web.Response:
    return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)


@dataclass(eq=False)
class RestTrading:
    """Signed REST order entry and account endpoints over the mock's matching engine."""

    host: _Host
    plan: FaultPlan
    keys: AccountKeys
    _: KW_ONLY
    #: from this time on the legacy listenKey endpoints are gone (unknown path, 404)
    listen_key_retired_ns: int | None = None
    listen_keys: set[str] = field(init=False, default_factory=set)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/order", self._place)
        app.router.add_delete("/api/v3/order", self._cancel)
        app.router.add_get("/api/v3/order", self._query)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_delete("/api/v3/openOrders", self._cancel_all)
        app.router.add_get("/api/v3/allOrders", self._all_orders)
        app.router.add_get("/api/v3/myTrades", self._my_trades)
        app.router.add_post("/api/v3/order/test", self._test_order)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_post("/api/v3/userDataStream", self._listen_key)
        app.router.add_put("/api/v3/userDataStream", self._listen_key)
        app.router.add_delete("/api/v3/userDataStream", self._listen_key)
        app.router.add_post("/_mock/balance", self._balance)

    async def _signed(self, request: web.Request) -> dict[str, Any]:
        body = (await request.read()).decode(errors="replace") if request.can_read_body else ""
        params: dict[str, Any] = dict(request.query)
        if body:
            params.update((await request.post()).items())
        header_key = request.headers.get("X-MBX-APIKEY")
        self.keys.check_rest(
            request.rel_url.raw_query_string, body, params, header_key, self.host.clock()
        )
        return params

    async def _place(self, request: web.Request) -> web.Response:
        now_ns = self.host.clock()
        try:
            params = await self._signed(request)
        except OrderRejected as exc:
            return _error(exc)
        fault = self.plan.order_fault(request.path, now_ns, "rest") if self.plan.faults else None
        if fault is not None:
            self.host.ground_truth.write(
                "fault_hit",
                ts=now_ns,
                id=fault.fault_id,
                type=fault.type,
                mode=fault.spec["mode"],
                path=request.path,
                client_order_id=params.get("newClientOrderId"),
            )
        executes = fault is None or fault.spec["mode"] == "lost" or fault.spec.get("executed")
        response: web.Response | None = None
        if executes:
            response = self._execute(params, now_ns)
        if fault is not None:
            body = order_error(fault)
            if fault.spec["mode"] == "error":
                return web.json_response(body, status=int(fault.spec.get("status", 503)))
            await asyncio.sleep(float(fault.spec.get("hang", 10.0)))
            return web.json_response(body, status=504)
        assert response is not None
        return response

    def _execute(self, params: dict[str, Any], now_ns: int) -> web.Response:
        record = order_record(params, now_ns, "rest")
        try:
            outcome = self.host.engine.place(params, now_ns)
        except OrderRejected as exc:
            record.update(code=exc.code, msg=exc.msg)
            self.host.ground_truth.write("order", **record)
            return _error(exc)
        record_placed(record, outcome.order)
        self.host.ground_truth.write("order", **record)
        self.host.publish_user_events(outcome.events)
        return web.json_response(outcome.result)

    async def _cancel(self, request: web.Request) -> web.Response:
        return await self._apply(request, self.host.engine.cancel)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        return await self._apply(request, self.host.engine.cancel_all)

    async def _apply(
        self, request: web.Request, action: Callable[[dict[str, Any], int], tuple[Any, Events]]
    ) -> web.Response:
        """Run a signed engine action; publish its user-data events; answer its result."""
        try:
            params = await self._signed(request)
            result, events = action(params, self.host.clock())
        except OrderRejected as exc:
            return _error(exc)
        self.host.publish_user_events(events)
        return web.json_response(result)

    async def _query(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda p: order_status(self.host.engine, p))

    async def _open_orders(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda p: open_orders(self.host.engine, p))

    async def _all_orders(self, request: web.Request) -> web.Response:
        engine = self.host.engine
        return await self._answer(
            request, lambda p: all_orders(engine.orders, p, engine.market.symbols)
        )

    async def _my_trades(self, request: web.Request) -> web.Response:
        engine = self.host.engine
        return await self._answer(
            request, lambda p: my_trades(engine.orders, p, engine.market.symbols)
        )

    async def _test_order(self, request: web.Request) -> web.Response:
        """Check an order as ``POST /api/v3/order`` would, without placing it (Spot API)."""
        return await self._answer(
            request, lambda p: test_order_result(self.host.engine, p, self.host.clock())
        )

    async def _account(self, request: web.Request) -> web.Response:
        return await self._answer(request, lambda p: self.host.engine.account(self.host.clock()))

    async def _answer(
        self, request: web.Request, query: Callable[[dict[str, Any]], Any]
    ) -> web.Response:
        """Answer a signed read: ``query`` of the request's parameters, or its error."""
        try:
            params = await self._signed(request)
            result = query(params)
        except OrderRejected as exc:
            return _error(exc)
        return web.json_response(result)

    async def _balance(self, request: web.Request) -> web.Response:
        """Apply ``{"asset": "USDT", "delta": "-10.5"}``: a balanceUpdate to every subscriber."""
        try:
            body = await request.json()
            asset, delta = str(body["asset"]).upper(), str(body["delta"])
            events = self.host.engine.adjust_balance(asset, delta, self.host.clock())
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            return web.json_response({"error": f"give asset and delta: {exc}"}, status=400)
        self.host.publish_user_events(events)
        return web.json_response({"asset": asset, "free": events[1]["B"][0]["f"]})

    async def _listen_key(self, request: web.Request) -> web.Response:
        retired = self.listen_key_retired_ns
        if retired is not None and self.host.clock() >= retired:
            # The Spot changelog retires the REST listenKey in favour of the WebSocket API's
            # userDataStream.subscribe: past the date the path is simply gone.
            return unknown_path(request.method, request.path)
        key = request.headers.get("X-MBX-APIKEY")
        if not self.keys.known(key):
            return _error(OrderRejected(-2015, "Invalid API-key, IP, or permissions for action."))
        if request.method == "POST":
            listen_key = secrets.token_urlsafe(45)[:60]
            self.listen_keys.add(listen_key)
            return web.json_response({"listenKey": listen_key})
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            params.update((await request.post()).items())
        listen_key = str(params.get("listenKey") or "")
        if listen_key not in self.listen_keys:
            return _error(OrderRejected(-1125, "This listenKey does not exist."))
        if request.method == "DELETE":
            self.listen_keys.discard(listen_key)
        return web.json_response({})
