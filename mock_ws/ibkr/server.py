"""Serve the IBKR Client Portal gateway mock over one aiohttp port: REST and ``/v1/api/ws``.

REST under ``/v1/api``: ``POST /tickle``, ``GET|POST /iserver/auth/status``, ``POST
/iserver/reauthenticate``, ``POST /logout``, ``GET /iserver/accounts``, ``GET
/iserver/secdef/search``, ``GET /trsrv/stocks``, ``POST /iserver/account/{acct}/orders``,
``POST /iserver/reply/{id}``, ``DELETE /iserver/account/{acct}/order/{id}``, ``GET
/iserver/account/orders``, ``GET /iserver/account/trades``, ``GET /portfolio/accounts``, ``GET
/portfolio/{acct}/positions/{page}``, ``GET /iserver/marketdata/snapshot`` (pre-flight first,
then the fields: :meth:`~mock_ws.ibkr.marketdata.L1Feed.snapshot`); every request paced by
:class:`~mock_ws.ibkr.gateway.Pacer` (429 ``{"error": "Too many requests"}``, the penalty box).
``/iserver`` answers 401 while the brokerage session is not authenticated; market data and
orders need ``/iserver/accounts`` first.

WebSocket ``/v1/api/ws``: authenticated by the ``api`` cookie on the upgrade (the bare token
or ``{"session": ...}``: :func:`~mock_ws.ibkr.gateway.session_of_cookie`) or by
``{"session": "<token from /tickle>"}`` as the first message (until then ``{"message": "waiting
for session"}``); then ``system`` (``success``), ``act`` and ``sts``; ``system`` heartbeats
(``hb``) every ``hb_interval_s``; ``tic`` keeps the session alive; ``smd``/``umd`` level-1 data
(:mod:`~mock_ws.ibkr.marketdata`), ``sor``/``str``/``spl`` orders, trades and PnL, ``blt`` and
``ntf`` pushed by ``POST /_mock/ibkr/bulletin``. A session that expires or is taken by a
competing login sends ``sts`` ``authenticated: false`` and ends every market-data subscription.

Shared fault plan: ``rate_limit`` (scope ``rest`` or ``all``: 429), ``order_error`` (``kind``
``rest``, ``path`` e.g. ``/iserver/reply``: ``error`` 503 not executed, ``lost`` executed and
answered 504 after ``hang`` s, ``timeout`` not executed and answered 504 after ``hang`` s),
``stall`` (path ``/v1/api/ws``: market data withheld) and ``drop`` (path ``/v1/api/ws``).
Control: ``GET /_mock/ibkr/status``, ``POST /_mock/ibkr/compete``, ``POST /_mock/ibkr/expire``.
Plain HTTP on loopback (the real gateway serves a self-signed certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tickpipe.common.units import NS_PER_S
from tickpipe.mock_ws.faults import Fault, FaultPlan
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.ibkr.broker import IbkrBroker, Outcome
from tickpipe.mock_ws.ibkr.contracts import ContractTable
from tickpipe.mock_ws.ibkr.gateway import Gateway, Pacer, session_of_cookie
from tickpipe.mock_ws.ibkr.marketdata import L1Feed, Subscription
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.serving import MarketServer

__all__ = ["IbkrMock"]

log = logging.getLogger("tickpipe.mock_ws.ibkr")

WS_PATH = "/v1/api/ws"
_TOPIC = re.compile(r"^([a-z]{3})(?:\+([^+{]*))?(?:\+?(\{.*\}))?$", re.S)
_ORDERS = re.compile(r"^/v1/api/iserver/account/([^/]+)/orders$")
_CANCEL = re.compile(r"^/v1/api/iserver/account/([^/]+)/order/([^/]+)$")
_REPLY = re.compile(r"^/v1/api/iserver/reply/([^/]+)$")
_POSITIONS = re.compile(r"^/v1/api/portfolio/([^/]+)/positions(?:/\d+)?$")


@dataclass
class _Conn:
    conn_id: int
    ws: web.WebSocketResponse
    authenticated: bool = False
    subs: dict[int, Subscription] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)  # sor, str, spl
    outbox: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class IbkrMock(MarketServer):
    """The gateway's aiohttp application and its market loop; see the module docstring."""

    market_task_name = "ibkr-market"

    def __init__(
        self,
        sim: MarketSim,
        *,
        seed: int,
        ground_truth: GroundTruthWriter,
        clock: Callable[[], int],
        faults: FaultPlan | None = None,
        session_timeout_s: float = 360.0,
        penalty_s: float = 600.0,
        global_per_s: int = 10,
        md_interval_s: float = 0.25,
        md_expiry_s: float = 600.0,
        hb_interval_s: float = 10.0,
    ) -> None:
        self.sim = sim
        self.clock = clock
        self.contracts = ContractTable(sim.symbols)
        self.gateway = Gateway(seed=seed, now_ns=clock(), timeout_s=session_timeout_s)
        self.pacer = Pacer(global_per_s=global_per_s, penalty_s=penalty_s)
        self.feed = L1Feed(
            sim, self.contracts, seed, interval_s=md_interval_s, expiry_s=md_expiry_s
        )
        self.broker = IbkrBroker(sim, self.contracts, account_id=self.gateway.account_id, seed=seed)
        self.ground_truth = ground_truth
        self.faults = faults or FaultPlan(seed)
        self.faults.listeners.append(self._on_fault)
        self.hb_interval_ns = int(hb_interval_s * NS_PER_S)
        self.connections: dict[int, _Conn] = {}
        #: The gateway's snapshot streams, opened by a first snapshot request per conid.
        self.snapshot_streams: dict[int, Subscription] = {}
        self.requests: list[tuple[int, str, str, int]] = []  # (ts, method, path, status)
        self._ids = itertools.count(1)
        self._server_ids = itertools.count(1)
        self._last_hb = 0
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle_ws)
        app.router.add_get("/_mock/ibkr/status", self._status)
        app.router.add_post("/_mock/ibkr/compete", self._compete)
        app.router.add_post("/_mock/ibkr/expire", self._expire)
        app.router.add_post("/_mock/ibkr/bulletin", self._bulletin)
        app.router.add_route("*", "/v1/api/{tail:.*}", self._rest)
        self.app = app

    async def release_connections(self) -> None:
        """Tell every connection's writer to close it (1001, since the server is closing)."""
        for conn in list(self.connections.values()):
            conn.outbox.put_nowait(None)

    # ---- market loop -----------------------------------------------------------------------------
    def step(self, now_ns: int) -> None:
        """Advance the market to ``now_ns``: fills, session expiry, heartbeats, L1 updates."""
        trades = self.sim.trades_due(now_ns)
        self.feed.on_trades(trades)
        self._publish(self.broker.on_trades(trades, now_ns))
        if self.gateway.check(now_ns):
            log.warning("brokerage session expired without keep-alive")
            self.ground_truth.write("ibkr_session_expired", ts=now_ns)
            self._logged_out(
                {
                    "authenticated": False,
                    "competing": False,
                    "connected": True,
                    "message": "session expired",
                }
            )
        if now_ns - self._last_hb >= self.hb_interval_ns:
            self._last_hb = now_ns
            for conn in self._authed():
                self._send(conn, {"topic": "system", "hb": now_ns // 1_000_000})
        if not (self.gateway.authenticated and self.gateway.accounts_queried):
            return
        stalled = any(f.matches(WS_PATH, "stream") for f in self.faults.of_type(("stall",), now_ns))
        for conn in self._authed():
            for message in self.feed.due(conn.subs, now_ns):
                if stalled:
                    continue
                self._send(conn, message)
                if "31" in message or "7059" in message:
                    conid = int(message["conid"])
                    symbol = self.contracts.by_conid[conid]
                    values = self.feed.values[symbol]
                    self.ground_truth.write(
                        "ibkr_last_sent",
                        ts=now_ns,
                        conn=conn.conn_id,
                        symbol=symbol,
                        conid=conid,
                        updated=message["_updated"],
                        price=values["31"],
                        size=values.get("7059", ""),
                    )

    def _authed(self) -> list[_Conn]:
        return [c for c in self.connections.values() if c.authenticated]

    def _logged_out(self, args: dict[str, Any]) -> None:
        self.snapshot_streams.clear()
        for conn in self._authed():
            conn.subs.clear()
            self._send(conn, {"topic": "sts", "args": args})

    def _publish(self, outcome: Outcome) -> None:
        now = self.clock()
        for execution in outcome.trades:
            self.ground_truth.write(
                "ibkr_fill",
                ts=now,
                **{
                    k: execution[k]
                    for k in (
                        "execution_id",
                        "symbol",
                        "side",
                        "size",
                        "price",
                        "order_ref",
                        "order_id",
                    )
                },
            )
        for conn in self._authed():
            if outcome.orders and "sor" in conn.topics:
                self._send(conn, {"topic": "sor", "args": outcome.orders})
            if outcome.trades and "str" in conn.topics:
                self._send(conn, {"topic": "str", "args": outcome.trades})
            if (outcome.trades or outcome.orders) and "spl" in conn.topics:
                self._send(conn, {"topic": "spl", "args": self.broker.pnl()})

    def _on_fault(self, fault: Fault, now_ns: int) -> None:
        if fault.type not in ("drop", "server_shutdown") or not fault.matches(WS_PATH, "stream"):
            return
        for conn in list(self.connections.values()):
            conn.outbox.put_nowait(None)

    # ---- WebSocket -------------------------------------------------------------------------------
    def _send(self, conn: _Conn, message: dict[str, Any]) -> None:
        conn.outbox.put_nowait(message)

    async def _writer(self, conn: _Conn) -> None:
        while True:
            message = await conn.outbox.get()
            if message is None:
                await conn.ws.close(code=1006 if not self._closing else 1001, message=b"dropped")
                return
            await conn.ws.send_str(orjson.dumps(message).decode())

    def _greet(self, conn: _Conn) -> None:
        conn.authenticated = True
        gw = self.gateway
        self._send(
            conn, {"topic": "system", "success": gw.username, "isFT": False, "isPaper": True}
        )
        self._send(
            conn,
            {
                "topic": "act",
                "args": {"accounts": [gw.account_id], "selectedAccount": gw.account_id},
            },
        )
        self._send(conn, {"topic": "sts", "args": {"authenticated": True}})

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            return web.Response(status=503)
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(next(self._ids), ws)
        self.connections[conn.conn_id] = conn
        self.ground_truth.write("ibkr_connect", conn=conn.conn_id, ts=self.clock())
        writer = asyncio.create_task(self._writer(conn), name=f"ibkr-writer-{conn.conn_id}")
        cookie = session_of_cookie(request.headers.get("Cookie", ""))
        if cookie == self.gateway.session and self.gateway.authenticated:
            self._greet(conn)
        else:
            self._send(conn, {"message": "waiting for session"})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self.connections.pop(conn.conn_id, None)
            self.ground_truth.write("ibkr_disconnect", conn=conn.conn_id, ts=self.clock())
        return ws

    def _on_text(self, conn: _Conn, text: str) -> None:
        now = self.clock()
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                body = orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return
            session = body.get("session") if isinstance(body, dict) else None
            if session == self.gateway.session and self.gateway.authenticated:
                if not conn.authenticated:
                    self._greet(conn)
            else:
                self._send(conn, {"message": "waiting for session"})
            return
        if not conn.authenticated:
            self._send(conn, {"message": "waiting for session"})
            return
        if stripped == "tic":
            self.gateway.keep_alive(now)
            self._send(
                conn,
                {
                    "topic": "tic",
                    "alive": True,
                    "id": self.gateway.session[:8],
                    "lastAccessed": now // 1_000_000,
                },
            )
            return
        if stripped.startswith("ech"):
            self._send(conn, {"topic": "ech", "hb": now // 1_000_000})
            return
        match = _TOPIC.match(stripped)
        if match is None:
            self._send(conn, {"topic": "error", "error": f"unknown message {stripped[:40]!r}"})
            return
        topic, target, args_text = match.group(1), match.group(2) or "", match.group(3) or "{}"
        try:
            args = orjson.loads(args_text)
        except orjson.JSONDecodeError:
            args = {}
        if topic == "smd":
            self._smd(conn, target, args, now)
        elif topic == "umd":
            with contextlib.suppress(ValueError):
                conn.subs.pop(int(target.split("@")[0]), None)
        elif topic in ("sor", "str", "spl"):
            conn.topics.add(topic)
            if topic == "sor":
                self._send(conn, {"topic": "sor", "args": []})
            elif topic == "spl":
                self._send(conn, {"topic": "spl", "args": self.broker.pnl()})
        elif topic in ("uor", "utr", "upl"):
            conn.topics.discard({"uor": "sor", "utr": "str", "upl": "spl"}[topic])

    def _smd(self, conn: _Conn, target: str, args: Any, now: int) -> None:
        try:
            conid = int(target.split("@")[0])
        except ValueError:
            self._send(conn, {"topic": f"smd+{target}", "error": "Invalid conid"})
            return
        fields = args.get("fields") if isinstance(args, dict) else None
        wanted = [str(f) for f in fields] if isinstance(fields, list) else []
        sub = self.feed.subscribe(conn.subs, conid, wanted, now, f"q{next(self._server_ids)}")
        if sub is None:
            self._send(conn, {"topic": f"smd+{conid}", "error": "Invalid conid"})
            return
        self.ground_truth.write("ibkr_smd", ts=now, conn=conn.conn_id, conid=conid)

    # ---- REST ------------------------------------------------------------------------------------
    def _json(self, status: int, body: Any) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        method, path = request.method, request.path
        address = request.remote or "?"
        refused = self.pacer.admit(address, method, path, now)
        if refused is None and self.faults.rate_limited("rest", now) is not None:
            refused = "rate_limit fault"
        if refused is not None:
            self.requests.append((now, method, path, 429))
            log.warning("429 %s %s: %s", method, path, refused)
            return self._json(429, {"error": "Too many requests", "reason": refused})
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return self._json(400, {"error": "Bad Request: body is not JSON"})
        status, answer = await self._route(method, path, request.query, body, now)
        self.requests.append((now, method, path, status))
        return self._json(status, answer)

    async def _route(
        self, method: str, path: str, query: Any, body: Any, now: int
    ) -> tuple[int, Any]:
        gw = self.gateway
        gw.check(now)
        if path == "/v1/api/tickle":
            return 200, gw.tickle(now)
        if path == "/v1/api/iserver/auth/status":
            return 200, gw.auth_status()
        if path == "/v1/api/iserver/reauthenticate" and method == "POST":
            answer = gw.reauthenticate(now)
            for conn in self._authed():
                self._send(conn, {"topic": "sts", "args": {"authenticated": True}})
            return 200, answer
        if path == "/v1/api/logout" and method == "POST":
            self._logged_out({"authenticated": False})
            return 200, gw.logout()
        if path == "/v1/api/portfolio/accounts" and method == "GET":
            return 200, gw.portfolio_accounts()
        if path == "/v1/api/trsrv/stocks":
            return self.contracts.stocks(query)
        if path.startswith("/v1/api/iserver/") and not gw.authenticated:
            return 401, {"error": "not authenticated", "statusCode": 401}
        if path == "/v1/api/iserver/accounts":
            return 200, gw.accounts()
        if path == "/v1/api/iserver/secdef/search":
            return self.contracts.secdef_search(query)
        if path == "/v1/api/iserver/marketdata/snapshot" and method == "GET":
            return self._snapshot(query, now)
        if path == "/v1/api/iserver/account/trades":
            return 200, self.broker.trades()
        if path == "/v1/api/iserver/account/orders" and method == "GET":
            return 200, self.broker.live_orders()
        match = _POSITIONS.match(path)
        if match and method == "GET":
            return 200, self.broker.positions_json()
        order_path = _ORDERS.match(path) or _REPLY.match(path) or _CANCEL.match(path)
        if order_path is None:
            return 404, {"error": f"no such endpoint: {method} {path}"}
        if not gw.accounts_queried:
            return 400, {"error": "Please query /accounts first"}
        return await self._order_request(method, path, body, now)

    def _snapshot(self, query: Any, now: int) -> tuple[int, Any]:
        """``GET /iserver/marketdata/snapshot?conids=...&fields=...`` (``/accounts`` first)."""
        if not self.gateway.accounts_queried:
            return 400, {"error": "Please query /accounts first"}
        try:
            conids = [int(c) for c in str(query.get("conids", "")).split(",") if c.strip()]
        except ValueError:
            return 400, {"error": "conids must be a comma-separated list of integers"}
        if not conids:
            return 400, {"error": "conids is required"}
        fields = [f.strip() for f in str(query.get("fields", "")).split(",") if f.strip()]
        server_id = lambda: f"q{next(self._server_ids)}"  # noqa: E731
        return 200, self.feed.snapshot(self.snapshot_streams, conids, fields, now, server_id)

    async def _order_request(self, method: str, path: str, body: Any, now: int) -> tuple[int, Any]:
        fault = None
        if method == "POST":
            fault = self.faults.order_fault(path, now, kind="rest")
        if fault is not None:
            self._fault_hit(fault, path, body, now)
        if (
            fault is not None
            and fault.spec.get("mode") in ("error", "timeout")
            and not (fault.spec.get("executed"))
        ):
            if fault.spec["mode"] == "timeout":
                await asyncio.sleep(float(fault.spec.get("hang", 10.0)))
                return 504, {"error": "Gateway Timeout"}
            return 503, {"error": "Service Unavailable"}
        if (match := _ORDERS.match(path)) and method == "POST":
            outcome = self.broker.place(match.group(1), body, now)
        elif (match := _REPLY.match(path)) and method == "POST":
            outcome = self.broker.reply(match.group(1), body, now)
        elif (match := _CANCEL.match(path)) and method == "DELETE":
            outcome = self.broker.cancel(match.group(1), match.group(2), now)
        else:
            return 405, {"error": f"method {method} not allowed on {path}"}
        if outcome.placed is not None:
            self.ground_truth.write("ibkr_order", ts=now, **outcome.placed)
        self._publish(outcome)
        if fault is not None:
            if fault.spec.get("mode") == "error":
                return 503, {"error": "Service Unavailable"}
            await asyncio.sleep(float(fault.spec.get("hang", 10.0)))
            return 504, {"error": "Gateway Timeout"}
        return outcome.status, outcome.body

    def _fault_hit(self, fault: Fault, path: str, body: Any, now: int) -> None:
        """Log an order fault and write it to the ground truth with the order's ``cOID``."""
        orders = body.get("orders") if isinstance(body, dict) else None
        ticket = orders[0] if isinstance(orders, list) and orders else None
        cooid = str(ticket.get("cOID") or "") if isinstance(ticket, dict) else ""
        mode = str(fault.spec.get("mode", ""))
        log.warning("order_error fault %s on POST %s (cOID %r)", mode, path, cooid)
        self.ground_truth.write(
            "fault_hit", ts=now, id=fault.fault_id, type=fault.type, mode=mode, path=path,
            client_order_id=cooid,
        )  # fmt: skip

    # ---- control ---------------------------------------------------------------------------------
    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "session": {
                **self.gateway.auth_status(),
                "expirations": self.gateway.expirations,
                "accounts_queried": self.gateway.accounts_queried,
            },
            "pacing": self.pacer.status(now),
            "connections": [
                {
                    "conn": c.conn_id,
                    "authenticated": c.authenticated,
                    "subscriptions": sorted(c.subs),
                    "topics": sorted(c.topics),
                }
                for c in self.connections.values()
            ],
            "subscriptions_expired": self.feed.expired,
            "questions_asked": self.broker.questions_asked,
            "orders": len(self.broker.engine.orders),
            "positions": {s: f"{q.normalize():f}" for s, q in self.broker.positions.items()},
            "last_price": {s: self.sim.last_price(s) for s in self.sim.symbols},
            "conids": self.contracts.by_symbol,
        }

    async def _compete(self, request: web.Request) -> web.Response:
        self.gateway.compete()
        self._logged_out(
            {
                "authenticated": False,
                "competing": True,
                "connected": True,
                "message": "competing session",
            }
        )
        return web.json_response({"competing": True})

    async def _expire(self, request: web.Request) -> web.Response:
        self.gateway.last_alive_ns = self.clock() - self.gateway.timeout_ns - 1
        self.step(self.clock())
        return web.json_response({"authenticated": self.gateway.authenticated})

    async def _bulletin(self, request: web.Request) -> web.Response:
        now_ms = self.clock() // 1_000_000
        for conn in self._authed():
            self._send(
                conn,
                {
                    "topic": "blt",
                    "args": [{"id": f"b{now_ms}", "message": "Exchange bulletin from the mock"}],
                },
            )
            self._send(
                conn,
                {
                    "topic": "ntf",
                    "args": [
                        {
                            "id": f"n{now_ms}",
                            "title": "Notice",
                            "text": "Notification from the mock",
                            "url": "",
                        }
                    ],
                },
            )
        return web.json_response({"sent": len(self._authed())})
