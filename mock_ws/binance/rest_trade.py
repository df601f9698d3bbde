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
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tickpipe.mock_ws.binance.auth import check_rest_signed
from tickpipe.mock_ws.binance.rest_market import unknown_path
from tickpipe.mock_ws.faults import FaultPlan
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.history import all_orders, my_trades, test_order_result
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected

__all__ = ["RestTrading"]

NS_PER_MS = 1_000_000
Events = list[dict[str, Any]]


class _Host(Protocol):
    engine: MatchingEngine
    ground_truth: GroundTruthWriter
    clock: Callable[[], int]

    def publish_user_events(self, events: Events) -> None: ...


def _error(exc: OrderRejected) -> web.Response:
    return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)


class RestTrading:
    """Signed REST order entry and account endpoints over the mock's matching engine."""

    def __init__(
        self,
        host: _Host,
        plan: FaultPlan,
        *,
        api_key: str,
        api_secret: str,
        ed25519_keys: Mapping[str, Ed25519PublicKey] | None = None,
        listen_key_retired_ns: int | None = None,
    ) -> None:
        self.host = host
        #: from this time on the legacy listenKey endpoints are gone (unknown path, 404)
        self.listen_key_retired_ns = listen_key_retired_ns
        self.ed25519_keys = dict(ed25519_keys or {})
        self.plan = plan
        self._api_key = api_key
        self._api_secret = api_secret
        self.listen_keys: set[str] = set()

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
        check_rest_signed(
            request.rel_url.raw_query_string,
            body,
            params,
            request.headers.get("X-MBX-APIKEY"),
            api_key=self._api_key,
            api_secret=self._api_secret,
            now_ns=self.host.clock(),
            ed25519_keys=self.ed25519_keys,
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
            body = {
                "code": int(fault.spec.get("code", -1007)),
                "msg": "Timeout waiting for response from backend server. Send status unknown; "
                "execution status unknown.",
            }
            if fault.spec["mode"] == "error":
                return web.json_response(body, status=int(fault.spec.get("status", 503)))
            await asyncio.sleep(float(fault.spec.get("hang", 10.0)))
            return web.json_response(body, status=504)
        assert response is not None
        return response

    def _execute(self, params: dict[str, Any], now_ns: int) -> web.Response:
        record: dict[str, Any] = {
            "client_order_id": params.get("newClientOrderId"),
            "order_id": None,
            "symbol": params.get("symbol"),
            "side": params.get("side"),
            "type": params.get("type"),
            "qty": params.get("quantity"),
            "status": "REJECTED",
            "price": params.get("price"),
            "ts": now_ns,
            "conn": "rest",
        }
        try:
            outcome = self.host.engine.place(params, now_ns)
        except OrderRejected as exc:
            record.update(code=exc.code, msg=exc.msg)
            self.host.ground_truth.write("order", **record)
            return _error(exc)
        order = outcome.order
        record.update(
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            status=order.status,
            trade_ids=[f.trade_id for f in order.fills],
        )
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
        try:
            params = await self._signed(request)
            symbol = str(params.get("symbol") or "").upper()
            if not self.host.engine.market.has_symbol(symbol):
                raise OrderRejected(-1121, "Invalid symbol.")
            order = self.host.engine.find(
                order_id=params.get("orderId"), client_order_id=params.get("origClientOrderId")
            )
            if order.symbol != symbol:
                raise OrderRejected(-2013, "Order does not exist.")
        except OrderRejected as exc:
            return _error(exc)
        return web.json_response(order.query_result())

    async def _open_orders(self, request: web.Request) -> web.Response:
        try:
            params = await self._signed(request)
            symbol = str(params.get("symbol") or "").upper() or None
            if symbol is not None and not self.host.engine.market.has_symbol(symbol):
                raise OrderRejected(-1121, "Invalid symbol.")
        except OrderRejected as exc:
            return _error(exc)
        return web.json_response([o.query_result() for o in self.host.engine.open_orders(symbol)])

    async def _all_orders(self, request: web.Request) -> web.Response:
        return await self._history(request, all_orders)

    async def _my_trades(self, request: web.Request) -> web.Response:
        return await self._history(request, my_trades)

    async def _history(self, request: web.Request, query: Callable[..., Any]) -> web.Response:
        engine = self.host.engine
        try:
            params = await self._signed(request)
            return web.json_response(query(engine.orders, params, engine.market.symbols))
        except OrderRejected as exc:
            return _error(exc)

    async def _test_order(self, request: web.Request) -> web.Response:
        """Check an order as ``POST /api/v3/order`` would, without placing it (Spot API)."""
        try:
            params = await self._signed(request)
            result = test_order_result(self.host.engine, params, self.host.clock())
        except OrderRejected as exc:
            return _error(exc)
        return web.json_response(result)

    async def _account(self, request: web.Request) -> web.Response:
        try:
            await self._signed(request)
        except OrderRejected as exc:
            return _error(exc)
        return web.json_response(self.host.engine.account(self.host.clock()))

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
        if not key or (key != self._api_key and key not in self.ed25519_keys):
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
