"""Fire the mock's fault plan against live connections and serve the ``/_mock/faults`` endpoint.

``GET /_mock/faults`` lists pending and active faults, ``POST /_mock/faults`` adds a fault, a
list of faults or ``{"faults": [...]}`` (answering ``{"added": [...]}``, 400 on an invalid one),
``DELETE /_mock/faults`` removes them all. Every fault is written to the ground-truth log as
``{"ev": "fault", "id", "type", ...}`` when it fires, and each effect on a connection or request
as ``{"ev": "fault_hit", ...}``. ``POST /_mock/scenario`` schedules market scenarios
(:mod:`mock_ws.scenarios`; logged as ``{"ev": "scenario", ...}``), ``GET /_mock/scenario``
lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web

from tickpipe.common.units import MS, NS_PER_S
from tickpipe.mock_ws.binance.connection import Connection, close
from tickpipe.mock_ws.binance.weights import too_much_weight
from tickpipe.mock_ws.faults import Fault, FaultError, FaultPlan, fault_list
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.scenarios import ScenarioError
from tickpipe.mock_ws.scenarios import regime_from as regime_from_check

__all__ = ["FaultRunner", "order_error"]

TICK_S = 0.05
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Host(Protocol):
    market: MarketSim
    connections: dict[int, Connection]
    ground_truth: GroundTruthWriter
    clock: Callable[[], int]
    background: set[asyncio.Task[Any]]

    def offer(
        self, conn: Connection, text: str, record: dict[str, Any] | None, tag: str | None
    ) -> None: ...


def order_error(fault: Fault) -> dict[str, Any]:
    """Return the ``{"code", "msg"}`` error of an ``order_error`` fault (REST and WS-API)."""
    return {
        "code": int(fault.spec.get("code", -1007)),
        "msg": str(
            fault.spec.get(
                "msg",
                "Timeout waiting for response from backend server. Send status unknown; "
                "execution status unknown.",
            )
        ),
    }


class FaultRunner:
    """Apply a :class:`FaultPlan` to the connections of a running mock."""

    def __init__(self, host: _Host, plan: FaultPlan, *, lifetime_s: float | None = None) -> None:
        self.host = host
        self.plan = plan
        self.lifetime_s = lifetime_s

    def add(self, specs: Iterable[Mapping[str, Any]]) -> list[Fault]:
        """Validate and add faults (all or none), then fire those already due."""
        now_ns = self.host.clock()
        specs = list(specs)
        probe = FaultPlan()
        for spec in specs:
            probe.add(spec, now_ns)
        added = [self.plan.add(spec, now_ns) for spec in specs]
        self.tick(now_ns)
        return added

    async def run(self) -> None:
        """Fire due faults and enforce lifetimes every 50 ms until cancelled."""
        while True:
            self.tick(self.host.clock())
            await asyncio.sleep(TICK_S)

    def tick(self, now_ns: int) -> None:
        """Fire due faults, close connections past their lifetime, drop slow readers."""
        for fault in self.plan.due(now_ns):
            self.host.ground_truth.write("fault", ts=now_ns, id=fault.fault_id, **fault.spec)
            self._fire(fault, now_ns)
        lifetimes = [float(f.spec["seconds"]) for f in self.plan.of_type(("lifetime",), now_ns)]
        if self.lifetime_s is not None:
            lifetimes.append(self.lifetime_s)
        readers = self.plan.of_type(("slow_reader",), now_ns)
        for conn in list(self.host.connections.values()):
            if conn.closing:
                continue
            if lifetimes and now_ns - conn.connected_ns >= min(lifetimes) * NS_PER_S:
                self.host.ground_truth.write("lifetime_close", ts=now_ns, conn=conn.conn_id)
                close(conn, 1000, "connection lifetime reached", self.host.background)
                continue
            for fault in readers:
                limit = int(fault.spec["max_queue"])
                if fault.matches(conn.path, conn.kind) and conn.outbox.qsize() > limit:
                    self._hit(fault, now_ns, conn=conn.conn_id, queued=conn.outbox.qsize())
                    close(conn, 1008, "client too slow", self.host.background)
                    break

    def _hit(self, fault: Fault, now_ns: int, **fields: Any) -> None:
        fault.hits += 1
        self.host.ground_truth.write(
            "fault_hit", ts=now_ns, id=fault.fault_id, type=fault.type, **fields
        )

    def _fire(self, fault: Fault, now_ns: int) -> None:
        if fault.type not in ("drop", "server_shutdown"):
            return
        for conn in list(self.host.connections.values()):
            if conn.closing or not fault.matches(conn.path, conn.kind):
                continue
            if fault.spec.get("stream") and (
                conn.stream is None or fault.spec["stream"] not in conn.stream
            ):
                continue
            self._hit(fault, now_ns, conn=conn.conn_id)
            if fault.type == "drop":
                code = fault.spec.get("code")
                if code is None and conn.transport is not None:
                    conn.closing = True
                    conn.transport.abort()
                else:
                    close(conn, int(code or 1006), "dropped", self.host.background)
            else:
                self._shutdown(conn, float(fault.spec.get("grace", 0.2)), now_ns)

    def _shutdown(self, conn: Connection, grace_s: float, now_ns: int) -> None:
        event = {"e": "serverShutdown", "E": now_ns // MS}
        body: dict[str, Any]
        if conn.api is not None:
            body = {"event": event}
        elif conn.stream is not None and conn.stream.combined:
            body = {"stream": "!serverShutdown", "data": event}
        else:
            body = event
        self.host.offer(conn, orjson.dumps(body).decode(), None, None)

        async def later() -> None:
            await asyncio.sleep(grace_s)
            close(conn, 1001, "server shutdown", self.host.background)

        task = asyncio.create_task(later())
        self.host.background.add(task)
        task.add_done_callback(self.host.background.discard)

    # ---- gaps ---------------------------------------------------------------------------------

    def skipped_trades(self, trades: list[SimTrade], now_ns: int) -> set[tuple[str, int]]:
        """Return the (symbol, trade id) pairs trade_gap faults swallow, logging each."""
        skipped: set[tuple[str, int]] = set()
        for trade in trades if self.plan.faults else ():
            gap = self.plan.skip_trade(trade.symbol, now_ns)
            if gap is not None:
                skipped.add((trade.symbol, trade.trade_id))
                self.host.ground_truth.write(
                    "trade_skipped",
                    ts=now_ns,
                    id=gap.fault_id,
                    symbol=trade.symbol,
                    trade_id=trade.trade_id,
                )
        return skipped

    def skip_depth(self, payload: dict[str, Any], skipped: set[int]) -> bool:
        """Tell whether a depth_gap fault swallows this diff event (``skipped``: ids so far)."""
        if id(payload) in skipped:
            return True
        if not self.plan.faults:
            return False
        now_ns = self.host.clock()
        gap = self.plan.skip_trade(payload["s"], now_ns, "depth_gap")
        if gap is None:
            return False
        skipped.add(id(payload))
        self.host.ground_truth.write(
            "depth_skipped",
            ts=now_ns,
            id=gap.fault_id,
            symbol=payload["s"],
            U=payload["U"],
            u=payload["u"],
        )
        return True

    # ---- requests -----------------------------------------------------------------------------

    def gate_api(self, conn: Connection, data: str | bytes) -> tuple[bool, Fault | None]:
        """Check a WS-API request against the plan: (answered already, order fault to apply)."""
        if not self.plan.faults:
            return False, None
        now_ns = self.host.clock()
        try:
            request = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False, None
        if not isinstance(request, dict):
            return False, None
        request_id = request.get("id")
        limited = self.plan.rate_limited("ws_api", now_ns)
        if limited is not None:
            status = int(limited.spec["status"])
            until_ms = now_ns // MS + int(float(limited.spec["retry_after"]) * 1000)
            error = {
                "code": -1003,
                "msg": too_much_weight(status, until_ms),
                "data": {"serverTime": now_ns // MS, "retryAfter": until_ms},
            }
            answer = {"id": request_id, "status": status, "error": error}
            self.host.offer(conn, orjson.dumps(answer).decode(), None, None)
            self._hit(limited, now_ns, conn=conn.conn_id, request_id=request_id)
            return True, None
        method = str(request.get("method", "")).removeprefix("v3/")
        if method != "order.place":
            return False, None
        fault = self.plan.order_fault(conn.path, now_ns)
        if fault is None:
            return False, None
        mode = fault.spec["mode"]
        self.host.ground_truth.write(
            "fault_hit",
            ts=now_ns,
            id=fault.fault_id,
            type=fault.type,
            mode=mode,
            conn=conn.conn_id,
            request_id=request_id,
            client_order_id=(request.get("params") or {}).get("newClientOrderId"),
        )
        if mode == "timeout":
            return True, None
        if mode == "error" and not fault.spec.get("executed"):
            self.host.offer(
                conn, orjson.dumps(self.error_answer(fault, request_id)).decode(), None, None
            )
            return True, None
        return False, fault

    @staticmethod
    def error_answer(fault: Fault, request_id: Any) -> dict[str, Any]:
        """Return the 5xx answer of an ``order_error`` fault in mode ``error``."""
        status = int(fault.spec.get("status", 503))
        return {"id": request_id, "status": status, "error": order_error(fault)}

    @web.middleware
    async def rest_middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Answer ``/api/`` requests 429/418 with ``Retry-After`` while a rate_limit is active."""
        if request.path.startswith("/api/") and self.plan.faults:
            now_ns = self.host.clock()
            limited = self.plan.rate_limited("rest", now_ns)
            if limited is not None:
                status = int(limited.spec["status"])
                retry_s = float(limited.spec["retry_after"])
                until_ms = now_ns // MS + int(retry_s * 1000)
                self._hit(limited, now_ns, path=request.path)
                return web.json_response(
                    {"code": -1003, "msg": too_much_weight(status, until_ms)},
                    status=status,
                    headers={"Retry-After": str(max(1, round(retry_s)))},
                )
        return await handler(request)

    # ---- control endpoint ---------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_mock/faults", self._get)
        app.router.add_post("/_mock/faults", self._post)
        app.router.add_delete("/_mock/faults", self._delete)
        app.router.add_get("/_mock/scenario", self._get_scenarios)
        app.router.add_post("/_mock/scenario", self._post_scenario)

    def schedule(self, specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Validate and schedule market scenarios (all or none); log each; return them."""
        now_ns = self.host.clock()
        specs = list(specs)
        for spec in specs:
            regime_from_check(spec, now_ns, self.host.market.symbols)
        out = []
        for spec in specs:
            regime = self.host.market.schedule(spec, now_ns)
            self.host.ground_truth.write("scenario", ts=now_ns, **regime.describe())
            out.append(regime.describe())
        return out

    async def _get_scenarios(self, request: web.Request) -> web.Response:
        return web.json_response({"scenarios": [r.describe() for r in self.host.market.regimes]})

    async def _post_scenario(self, request: web.Request) -> web.Response:
        try:
            data = orjson.loads(await request.read())
            specs = data if isinstance(data, list) else [data]
            if not all(isinstance(s, dict) for s in specs):
                raise ScenarioError("give a scenario object or a list of them")
            return web.json_response({"added": self.schedule(specs)})
        except (orjson.JSONDecodeError, ScenarioError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _get(self, request: web.Request) -> web.Response:
        now_ns = self.host.clock()
        return web.json_response({"faults": self.plan.listing(now_ns)})

    async def _post(self, request: web.Request) -> web.Response:
        try:
            specs = fault_list(orjson.loads(await request.read()))
            added = self.add(specs)
        except (orjson.JSONDecodeError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"added": [f.describe() for f in added]})

    async def _delete(self, request: web.Request) -> web.Response:
        with contextlib.suppress(Exception):
            await request.read()
        return web.json_response({"cleared": self.plan.clear()})
