"""Serve the Binance Spot mock over one aiohttp port: market streams, WebSocket API and REST.

Paths: ``/ws``, ``/ws/<stream>`` and ``/ws/<anything>`` (raw frames), ``/stream?streams=a/b``
(combined frames), ``/ws-api/v3`` (requests, orders, user data), REST ``/api/v3/...``
(:mod:`mock_ws.binance.rest_market`, :mod:`mock_ws.binance.rest_trade`) and the control endpoints
``/_mock/status``, ``/_mock/faults``, ``/_mock/scenario`` (:mod:`mock_ws.binance.control`) and
``/_mock/balance``. Market data comes from the simulation (:mod:`mock_ws.binance.feed`) or a
recording
(:mod:`mock_ws.binance.replay_shell`). Every connection has a bounded outbox drained by its
own writer task, so a slow client never blocks the others; a client whose outbox overflows is
disconnected. The server pings every ``ping_interval_s`` and drops a connection that has not
answered a ping within three intervals (Binance: 20 s and 1 minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tickpipe.common.units import MS
from tickpipe.mock_ws.binance.blast import blast_encoders
from tickpipe.mock_ws.binance.connection import (
    Connection,
    Record,
    blast_loop,
    close,
    offer,
    over_limit,
    ping_loop,
    write_loop,
)
from tickpipe.mock_ws.binance.control import FaultRunner
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.replay_shell import Replayer
from tickpipe.mock_ws.binance.rest_market import RestMarket, json_errors
from tickpipe.mock_ws.binance.rest_trade import RestTrading
from tickpipe.mock_ws.binance.status import server_status
from tickpipe.mock_ws.binance.streams import (
    StreamSession,
    frame,
    is_valid_stream,
    streams_from_path,
)
from tickpipe.mock_ws.binance.ws_api import ApiSession, WsApi
from tickpipe.mock_ws.faults import FaultPlan
from tickpipe.mock_ws.ground_truth import GroundTruthWriter, trade_record, user_event_record
from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.matching import MatchingEngine
from tickpipe.mock_ws.serving import cancel_task, going_away, listen
from tickpipe.mock_ws.tls import Transports

__all__ = ["BinanceMock"]

log = logging.getLogger("tickpipe.mock_ws")


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
        faults: FaultPlan | None = None,
        lifetime_s: float | None = None,
        weight_limit: int = 6000,
        max_incoming_per_s: int | None = 5,
        ed25519_keys: Mapping[str, Ed25519PublicKey] | None = None,
        blast: bool = False,
        blast_rate: float = 0.0,
        blast_symbols: Iterable[str] = (),
        listen_key_retired_ns: int | None = None,
    ) -> None:
        self.market = market
        self.engine = MatchingEngine(market)
        self.api = WsApi(
            self.engine, api_key=api_key, api_secret=api_secret, ed25519_keys=ed25519_keys
        )  # its market-data methods read self.feed, attached below
        self.ground_truth = ground_truth
        self.ping_interval_s = ping_interval_s
        self.max_incoming_per_s = max_incoming_per_s
        self.blast, self.blast_rate = blast, blast_rate
        #: Symbols whose trades are blasted; empty: every symbol's.
        self.blast_symbols = frozenset(s.upper() for s in blast_symbols)
        self.clock = clock
        self.started_ns = clock()
        self.connections: dict[int, Connection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._trade_task: asyncio.Task[None] | None = None
        self._closing = False
        self.background: set[asyncio.Task[Any]] = set()
        self.frames_sent = 0
        self.faults = FaultRunner(self, faults or FaultPlan(), lifetime_s=lifetime_s)
        self._fault_task: asyncio.Task[None] | None = None
        self.replayer: Replayer | None = None
        self.feed = MarketFeed(market, market.seed)
        self.engine.books = self.feed.books
        self.api.feed = self.feed
        self.rest = RestMarket(self.feed, clock, weight_limit=weight_limit)
        self.app = web.Application(
            middlewares=[json_errors, self.faults.rest_middleware, self.rest.weight_middleware]
        )
        self.transports = Transports()
        self.app.on_response_prepare.append(self.transports.on_prepare)
        self.trading = RestTrading(
            self, self.faults.plan, self.api.keys, listen_key_retired_ns=listen_key_retired_ns
        )
        self.faults.add_routes(self.app)
        self.rest.add_routes(self.app)
        self.trading.add_routes(self.app)
        self.app.router.add_get("/ws", self._handle_stream)
        self.app.router.add_get("/ws/{tail:.*}", self._handle_stream)
        self.app.router.add_get("/stream", self._handle_stream)
        self.app.router.add_get("/ws-api/v3", self._handle_api)
        self.app.router.add_get("/_mock/status", self._status)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listen on ``host:port`` (0 = any free port), start the trade loop; return the port."""
        self._runner, bound = await listen(self.app, host, port, ssl_context)
        self._trade_task = asyncio.create_task(self._market_loop(), name="mock-market")
        self._fault_task = asyncio.create_task(self.faults.run(), name="mock-faults")
        return bound

    async def close(self) -> None:
        """Stop the trade loop, close every connection (1001 going away) and the listener."""
        self._closing = True
        for task in (self._trade_task, self._fault_task):
            await cancel_task(task)
        await going_away(conn.ws for conn in list(self.connections.values()))
        if self._runner is not None:
            await self._runner.cleanup()
        await self.transports.abort()
        self.ground_truth.close()

    # ---- trade loop -------------------------------------------------------------------------

    async def _market_loop(self) -> None:
        if self.replayer is not None:
            self.feed.depth_override = self.replayer.depth
            await self.replayer.run(self)
        else:
            await asyncio.gather(self._trade_loop(), self._depth_loop())

    async def _trade_loop(self) -> None:
        interval_s = min(0.1, max(0.002, 1.0 / self.market.trades_per_s))
        while True:
            now_ns = self.clock()
            trades = self.market.trades_due(now_ns)
            if trades:
                self._broadcast(trades, now_ns)
            await asyncio.sleep(interval_s)

    def _broadcast(self, trades: list[SimTrade], now_ns: int) -> None:
        skipped = self.faults.skipped_trades(trades, now_ns)
        for stream, payload, done in self.feed.on_trades(trades, now_ns // MS):
            if done is not None and (done.symbol, done.trade_id) in skipped:
                continue
            traded = done is not None and payload["e"] == "trade"
            self.publish(stream, payload, trade_record(stream, done) if traded else None)
        for trade in trades:
            events = self.engine.on_market_trade(trade, now_ns)
            if events:
                self.publish_user_events(events)

    def _blasted(self, stream: str) -> bool:
        """Tell whether ``stream`` (named in a connection URL) comes from blast mode."""
        if not self.blast or not stream.endswith("@trade"):
            return False
        symbol = stream.partition("@")[0].upper()
        return not self.blast_symbols or symbol in self.blast_symbols

    def publish(self, stream: str, payload: Any, record: Record) -> None:
        """Send a market event to every connection subscribed to ``stream``."""
        for conn in list(self.connections.values()):
            if conn.stream is None or stream not in conn.stream:
                continue
            if stream in conn.blasting:
                continue
            body = payload
            if conn.micro and "E" in payload:
                body = {**payload, "E": payload["E"] * 1000}
                if "T" in payload:
                    body["T"] = payload["T"] * 1000
            text = frame(stream, body, combined=conn.stream.combined)
            self.offer(
                conn, text, None if record is None else {**record, "conn": conn.conn_id}, stream
            )

    async def _depth_loop(self) -> None:
        for tick in itertools.count():
            await asyncio.sleep(0.1)
            wanted = {n for c in self.connections.values() if c.stream for n in c.stream.streams}
            now_ms = self.clock() // MS
            skipped: set[int] = set()
            for interval_ms in (100, 1000) if tick % 10 == 9 else (100,):
                events = self.feed.depth_events(interval_ms, now_ms, wanted, diffs_wanted_only=True)
                for stream, payload, _ in events:
                    if payload.get("e") == "depthUpdate" and self.faults.skip_depth(
                        payload, skipped
                    ):
                        continue
                    if stream in wanted:
                        self.publish(stream, payload, None)
            if tick % 10 == 9:
                for stream, payload, _ in self.feed.second_events(now_ms, tick // 10, wanted):
                    self.publish(stream, payload, None)

    # ---- connections ------------------------------------------------------------------------

    def offer(self, conn: Connection, text: str, record: Record, tag: str | None) -> None:
        """Queue a frame for ``conn`` (tag: stream name, "user", or None for answers)."""
        offer(conn, text, record, tag, self.background)

    def _count_sent(self, n: int) -> None:
        self.frames_sent += n

    async def _serve(
        self, request: web.Request, conn_kind: str, setup: Callable[[Connection], None]
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        now_ns = self.clock()
        conn = Connection(next(self._ids), conn_kind, request.path_qs, ws, now_ns)
        conn.transport = request.transport
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
            asyncio.create_task(
                write_loop(conn, self.faults.plan, self.ground_truth, self.clock, self._count_sent),
                name=f"mock-writer-{conn.conn_id}",
            ),
            asyncio.create_task(
                ping_loop(conn, self.ping_interval_s, self.clock, self.background),
                name=f"mock-pinger-{conn.conn_id}",
            ),
        ]
        if conn.blasting and conn.stream is not None:
            encoders = blast_encoders(conn.stream, self.market, conn.blasting)
            blaster = blast_loop(conn, encoders, self.blast_rate, self.clock, self.ground_truth)
            tasks.append(asyncio.create_task(blaster, name=f"mock-blast-{conn.conn_id}"))
        try:
            async for msg in ws:
                limit = self.max_incoming_per_s
                if conn.stream is not None and over_limit(conn, self.clock(), limit):
                    self.ground_truth.write("limit_close", conn=conn.conn_id, ts=self.clock())
                    close(conn, 1008, "Too many requests", self.background)
                    continue
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

    def _on_message_safely(self, conn: Connection, data: str | bytes) -> None:
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
                answer = {"id": None, "status": 500, "error": error}
                self.offer(conn, orjson.dumps(answer).decode(), None, None)

    def _on_message(self, conn: Connection, data: str | bytes) -> None:
        now_ns = self.clock()
        if conn.stream is not None:
            answer = conn.stream.handle(data)
            self.offer(conn, orjson.dumps(answer).decode(), None, None)
            return
        assert conn.api is not None
        answered, fault = self.faults.gate_api(conn, data)
        if answered:
            return
        reply = self.api.handle(conn.api, data, now_ns)
        if reply.order_record is not None:
            self.ground_truth.write("order", **reply.order_record)
        if fault is None:
            self.offer(conn, orjson.dumps(reply.response).decode(), None, None)
        elif fault.spec["mode"] == "error":
            answer = self.faults.error_answer(fault, reply.response.get("id"))
            self.offer(conn, orjson.dumps(answer).decode(), None, None)
        self.deliver(reply.deliveries)
        self._to_listen_keys(reply.events)

    def publish_user_events(self, events: list[dict[str, Any]]) -> None:
        """Send account events to every user-data subscriber (WS-API and listenKey streams)."""
        self.deliver(self.api.fanout(events))
        self._to_listen_keys(events)

    def _to_listen_keys(self, events: list[dict[str, Any]]) -> None:
        for conn in list(self.connections.values()):
            if conn.listen_key is not None and conn.listen_key in self.trading.listen_keys:
                for event in events:
                    text = orjson.dumps(event).decode()
                    self.offer(conn, text, user_event_record(conn.conn_id, event), "user")

    def deliver(self, deliveries: list[tuple[ApiSession, dict[str, Any]]]) -> None:
        """Send user-data events to their sessions' connections, logging executionReports."""
        for session, message in deliveries:
            target = self.connections.get(session.conn_id)
            if target is not None:
                record = user_event_record(target.conn_id, message)
                self.offer(target, orjson.dumps(message).decode(), record, "user")

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
        tail = request.match_info.get("tail", "").split("/")[0]

        def setup(conn: Connection) -> None:
            conn.stream = StreamSession(self.market.symbols, combined=combined)
            conn.stream.subscribe(names)
            conn.micro = micro
            if not combined and tail in self.trading.listen_keys:
                conn.listen_key = tail
            conn.blasting = frozenset(n for n in names if self._blasted(n))

        return await self._serve(request, "stream", setup)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        show = request.query.get("returnRateLimits", "true").lower() != "false"

        def setup(conn: Connection) -> None:
            conn.api = self.api.open(
                conn.conn_id, return_rate_limits=show, connected_ms=conn.connected_ns // MS
            )

        return await self._serve(request, "api", setup)

    # ---- REST -------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        """Return connections, subscriptions, trades generated and orders, for humans and tests."""
        return server_status(self)
