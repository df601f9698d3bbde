"""Serve the Binance Spot mock over one aiohttp port: market streams, WebSocket API and REST.

Paths: ``/ws``, ``/ws/<stream>`` and ``/ws/<anything>`` (raw frames), ``/stream?streams=a/b``
(combined frames), ``/ws-api/v3`` (requests, orders, user data), ``/api/v3/ping|time|exchangeInfo``
and the control endpoint ``/_mock/status``. Every connection has a bounded outbox drained by its
own writer task, so a slow client never blocks the others; a client whose outbox overflows is
disconnected. The server pings every ``ping_interval_s`` and drops a connection that has not
answered a ping within three intervals (Binance: 20 s and 1 minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from mock_ws.ground_truth import GroundTruthWriter
from mock_ws.market import MarketSim, SimTrade
from mock_ws.matching import MatchingEngine
from mock_ws.rest import exchange_info
from mock_ws.streams import StreamSession, frame, is_valid_stream, streams_from_path
from mock_ws.ws_api import ApiSession, WsApi

__all__ = ["BinanceMock"]

log = logging.getLogger("tickpipe.mock_ws")

NS_PER_MS = 1_000_000
OUTBOX_LIMIT = 10_000
_Record = dict[str, Any] | None


@dataclass
class _Connection:
    conn_id: int
    kind: str  # "stream" or "api"
    path: str
    ws: web.WebSocketResponse
    connected_ns: int
    stream: StreamSession | None = None
    api: ApiSession | None = None
    micro: bool = False  # timeUnit=MICROSECOND
    outbox: asyncio.Queue[tuple[str, _Record]] = field(
        default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT)
    )
    last_pong_ns: int = 0
    overflowed: bool = False


class BinanceMock:
    """The aiohttp application and its trade loop; see the module docstring."""

    def __init__(
        self,
        market: MarketSim,
        *,
        api_key: str,
        api_secret: str,
        ground_truth: GroundTruthWriter,
        ping_interval_s: float = 20.0,
        clock: Callable[[], int],
    ) -> None:
        self.market = market
        self.engine = MatchingEngine(market)
        self.api = WsApi(self.engine, api_key=api_key, api_secret=api_secret)
        self.ground_truth = ground_truth
        self.ping_interval_s = ping_interval_s
        self.clock = clock
        self.started_ns = clock()
        self.connections: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._trade_task: asyncio.Task[None] | None = None
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()
        self.frames_sent = 0
        self.app = web.Application()
        self.app.router.add_get("/ws", self._handle_stream)
        self.app.router.add_get("/ws/{tail:.*}", self._handle_stream)
        self.app.router.add_get("/stream", self._handle_stream)
        self.app.router.add_get("/ws-api/v3", self._handle_api)
        self.app.router.add_get("/api/v3/ping", self._rest_ping)
        self.app.router.add_get("/api/v3/time", self._rest_time)
        self.app.router.add_get("/api/v3/exchangeInfo", self._rest_exchange_info)
        self.app.router.add_get("/_mock/status", self._status)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 = any free port), start the trade loop; return the port."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        try:
            self._runner = web.AppRunner(
                self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0
            )
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self._trade_task = asyncio.create_task(self._trade_loop(), name="mock-trades")
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        """Stop the trade loop, close every connection (1001 going away) and the listener."""
        self._closing = True
        if self._trade_task is not None:
            self._trade_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trade_task
        for conn in list(self.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"server shutdown"), 2.0)
        if self._runner is not None:
            await self._runner.cleanup()
        self.ground_truth.close()

    # ---- trade loop -------------------------------------------------------------------------

    async def _trade_loop(self) -> None:
        interval_s = min(0.1, max(0.002, 1.0 / self.market.trades_per_s))
        while True:
            now_ns = self.clock()
            trades = self.market.trades_due(now_ns)
            if trades:
                self._broadcast(trades, now_ns)
            await asyncio.sleep(interval_s)

    def _broadcast(self, trades: list[SimTrade], now_ns: int) -> None:
        now_ms = now_ns // NS_PER_MS
        for trade in trades:
            stream = f"{trade.symbol.lower()}@trade"
            payload = trade.payload(max(now_ms, trade.trade_time_ms))
            for conn in list(self.connections.values()):
                if conn.stream is None or stream not in conn.stream:
                    continue
                body = payload
                if conn.micro:
                    body = {**payload, "E": payload["E"] * 1000, "T": payload["T"] * 1000}
                record = {
                    "ev": "trade_sent",
                    "conn": conn.conn_id,
                    "stream": stream,
                    "symbol": trade.symbol,
                    "trade_id": trade.trade_id,
                    "price": trade.price,
                    "qty": trade.qty,
                    "T": trade.trade_time_ms,
                    "m": trade.buyer_is_maker,
                }
                self._offer(conn, frame(stream, body, combined=conn.stream.combined), record)

    # ---- connections ------------------------------------------------------------------------

    def _offer(self, conn: _Connection, text: str, record: _Record = None) -> None:
        try:
            conn.outbox.put_nowait((text, record))
        except asyncio.QueueFull:
            if not conn.overflowed:
                conn.overflowed = True
                log.warning("client too slow, disconnecting", extra={"conn": conn.conn_id})
                task = asyncio.create_task(conn.ws.close(code=1008, message=b"client too slow"))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _writer(self, conn: _Connection) -> None:
        while True:
            text, record = await conn.outbox.get()
            await conn.ws.send_str(text)
            self.frames_sent += 1
            if record is not None:
                fields = {k: v for k, v in record.items() if k != "ev"}
                self.ground_truth.write(record["ev"], ts=self.clock(), **fields)

    async def _pinger(self, conn: _Connection) -> None:
        timeout_ns = int(self.ping_interval_s * 3 * 1e9)
        while True:
            await asyncio.sleep(self.ping_interval_s)
            now_ns = self.clock()
            if now_ns - conn.last_pong_ns > timeout_ns:
                log.info("no pong in time, disconnecting", extra={"conn": conn.conn_id})
                await conn.ws.close(code=1008, message=b"pong timeout")
                return
            await conn.ws.ping(str(now_ns // NS_PER_MS).encode())

    async def _serve(
        self, request: web.Request, conn_kind: str, setup: Callable[[_Connection], None]
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        now_ns = self.clock()
        conn = _Connection(next(self._ids), conn_kind, request.path_qs, ws, now_ns)
        conn.last_pong_ns = now_ns
        setup(conn)
        if self._closing:
            await ws.close(code=1001, message=b"server shutdown")
            return ws
        self.connections[conn.conn_id] = conn
        self.ground_truth.write(
            "connect", conn=conn.conn_id, kind=conn_kind, path=conn.path, ts=now_ns
        )
        log.info("connected", extra={"conn": conn.conn_id, "path": conn.path})
        tasks = [
            asyncio.create_task(self._writer(conn), name=f"mock-writer-{conn.conn_id}"),
            asyncio.create_task(self._pinger(conn), name=f"mock-pinger-{conn.conn_id}"),
        ]
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message_safely(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.last_pong_ns = self.clock()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.connections.pop(conn.conn_id, None)
            if conn.api is not None:
                self.api.close(conn.api)
            self.ground_truth.write(
                "disconnect", conn=conn.conn_id, code=ws.close_code, ts=self.clock()
            )
            log.info("disconnected", extra={"conn": conn.conn_id, "code": ws.close_code})
        return ws

    def _on_message_safely(self, conn: _Connection, data: str | bytes) -> None:
        try:
            self._on_message(conn, data)
        except Exception:
            # A bug in the mock must not drop the client: answer like the venue's -1000.
            log.exception("request failed", extra={"conn": conn.conn_id})
            if conn.api is not None:
                error = {
                    "code": -1000,
                    "msg": "An unknown error occurred while processing the request.",
                }
                self._offer(
                    conn, orjson.dumps({"id": None, "status": 500, "error": error}).decode()
                )

    def _on_message(self, conn: _Connection, data: str | bytes) -> None:
        now_ns = self.clock()
        if conn.stream is not None:
            answer = conn.stream.handle(data)
            self._offer(conn, orjson.dumps(answer).decode())
            return
        assert conn.api is not None
        reply = self.api.handle(conn.api, data, now_ns)
        if reply.order_record is not None:
            self.ground_truth.write("order", **reply.order_record)
        self._offer(conn, orjson.dumps(reply.response).decode())
        for session, message in reply.deliveries:
            target = self.connections.get(session.conn_id)
            if target is None:
                continue
            event = message["event"]
            record: _Record = None
            if event.get("e") == "executionReport":
                record = {
                    "ev": "execution_report",
                    "conn": target.conn_id,
                    "subscription_id": message["subscriptionId"],
                    "client_order_id": event["c"],
                    "order_id": event["i"],
                    "symbol": event["s"],
                    "x": event["x"],
                    "X": event["X"],
                    "l": event["l"],
                    "L": event["L"],
                    "z": event["z"],
                    "t": event["t"],
                    "E": event["E"],
                }
            self._offer(target, orjson.dumps(message).decode(), record)

    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        combined = request.path == "/stream"
        if combined:
            names = [s for s in request.query.get("streams", "").split("/") if s]
        else:
            names = streams_from_path(request.match_info.get("tail", ""))
        bad = [n for n in names if not is_valid_stream(n, self.market.symbols)]
        if bad:
            return web.json_response(
                {"code": 2, "msg": f"Invalid request: invalid stream {bad[0]}"}, status=400
            )
        micro = request.query.get("timeUnit", "").lower() == "microsecond"

        def setup(conn: _Connection) -> None:
            conn.stream = StreamSession(self.market.symbols, combined=combined)
            conn.stream.subscribe(names)
            conn.micro = micro

        return await self._serve(request, "stream", setup)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        show = request.query.get("returnRateLimits", "true").lower() != "false"

        def setup(conn: _Connection) -> None:
            conn.api = self.api.open(conn.conn_id, return_rate_limits=show)

        return await self._serve(request, "api", setup)

    # ---- REST -------------------------------------------------------------------------------

    async def _rest_ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _rest_time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock() // NS_PER_MS})

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        status, body = exchange_info(
            self.market.symbols, dict(request.query), self.clock() // NS_PER_MS
        )
        return web.json_response(body, status=status)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        """Return connections, subscriptions, trades generated and orders, for humans and tests."""
        subscriptions: dict[str, int] = {}
        for conn in self.connections.values():
            for name in conn.stream.streams if conn.stream else []:
                subscriptions[name] = subscriptions.get(name, 0) + 1
        return {
            "uptime_s": round((self.clock() - self.started_ns) / 1e9, 3),
            "connections": {
                "total": len(self.connections),
                "stream": sum(c.kind == "stream" for c in self.connections.values()),
                "api": sum(c.kind == "api" for c in self.connections.values()),
            },
            "subscriptions": subscriptions,
            "user_data_subscriptions": len(self.api.subscribed()),
            "connection_list": [
                {
                    "conn": c.conn_id,
                    "kind": c.kind,
                    "path": c.path,
                    "streams": c.stream.streams if c.stream else [],
                    "subscription_id": c.api.subscription_id if c.api else None,
                }
                for c in self.connections.values()
            ],
            "trades_generated": self.market.trades_generated(),
            "last_price": {s: self.market.last_price(s) for s in self.market.symbols},
            "orders": len(self.engine.orders),
            "balances": {a: f"{v:f}" for a, v in self.engine.balances.items()},
            "frames_sent": self.frames_sent,
        }
