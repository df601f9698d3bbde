"""Serve the Alpaca mock over one aiohttp port: data streams, trading stream and REST.

Paths: ``/v2/iex``, ``/v2/sip``, ``/v2/test`` (FAKEPACA only) and ``/v1beta3/crypto/us``
(market data), ``/stream`` (trade updates), ``/v2/...`` REST (Trading API and historical
stock data), and the control endpoints ``GET /_mock/alpaca/status``, ``POST
/_mock/alpaca/inject`` (``{"kind": "status|correction|cancel_error|updated_bar", "symbol"}``),
``POST /_mock/alpaca/expire`` and ``POST /_mock/alpaca/reject_next``. Market-data frames are
JSON text, or msgpack binary when the upgrade request says ``Content-Type:
application/msgpack``; trading-stream frames are binary, as the paper endpoint sends them.
Every connection has a bounded outbox drained by its own writer; a data client whose outbox
overflows gets ``407 slow client`` and is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from tickpipe.mock_ws.alpaca.api import AlpacaApi
from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.alpaca.codec import encode_data_frame, encode_trading_frame
from tickpipe.mock_ws.alpaca.marketdata import AlpacaMarket, Outgoing, is_crypto
from tickpipe.mock_ws.alpaca.session import FEEDS, ConnectionRegistry, DataSession, Reply
from tickpipe.mock_ws.alpaca.trading_stream import TradingSession
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.serving import MarketServer, going_away
from tickpipe.mock_ws.tls import Transports

__all__ = ["TEST_SYMBOL", "AlpacaMock"]

log = logging.getLogger("tickpipe.mock_ws.alpaca")

TEST_SYMBOL = "FAKEPACA"
OUTBOX_LIMIT = 5_000
MAX_BATCH = 100
_CLOSE = object()
_Item = tuple[Any, list[dict[str, Any]]]


@dataclass
class _Conn:
    conn_id: int
    path: str
    ws: web.WebSocketResponse
    use_msgpack: bool
    data: DataSession | None = None
    trading: TradingSession | None = None
    outbox: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)  # bounded by _offer
    overflowed: bool = False


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer unknown paths and methods with Alpaca's JSON error shape, not text/plain."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return web.json_response({"code": 40410000, "message": "endpoint not found"}, status=404)


class AlpacaMock(MarketServer):
    """The Alpaca venue's aiohttp application and its market loop; see the module docstring."""

    market_task_name = "alpaca-market"

    def __init__(
        self,
        sim: MarketSim,
        *,
        api_key: str,
        api_secret: str,
        ground_truth: GroundTruthWriter,
        clock: Callable[[], int],
        seed: int = 1,
        auth_timeout_s: float = 10.0,
        connection_limit: int = 1,
        entitled_feeds: tuple[str, ...] = tuple(FEEDS),
        outbox_limit: int = OUTBOX_LIMIT,
        hours: str = "venue",
    ) -> None:
        self.sim = sim
        self.market = AlpacaMarket(sim.symbols)
        self.broker = AlpacaBroker(
            sim, seed=seed, hours=hours, around_the_clock=frozenset({TEST_SYMBOL})
        )
        self.credentials = {api_key: api_secret}
        self.api = AlpacaApi(self.broker, self.market, self.credentials)
        self.registry = ConnectionRegistry(connection_limit)
        self.ground_truth = ground_truth
        self.clock = clock
        self.auth_timeout_s = auth_timeout_s
        self.entitled_feeds = entitled_feeds
        self.outbox_limit = outbox_limit
        self.connections: dict[int, _Conn] = {}
        self.frames_sent = 0
        self._ids = itertools.count(1)
        app = web.Application(middlewares=[_json_errors])
        self.transports = Transports()
        app.on_response_prepare.append(self.transports.on_prepare)
        for path in FEEDS:
            app.router.add_get(path, self._handle_data)
        app.router.add_get("/stream", self._handle_trading)
        app.router.add_get("/_mock/alpaca/status", self._status)
        app.router.add_post("/_mock/alpaca/inject", self._inject)
        app.router.add_post("/_mock/alpaca/expire", self._expire)
        app.router.add_post("/_mock/alpaca/reject_next", self._reject_next)
        app.router.add_route("*", "/v2/{tail:.*}", self._rest)
        app.router.add_get("/v1beta3/crypto/us/{tail:.+}", self._rest)  # REST data
        self.app = app

    async def release_connections(self) -> None:
        """Close every connection with 1001 (going away)."""
        await going_away(conn.ws for conn in list(self.connections.values()))

    async def close(self) -> None:
        """Stop the market loop, close every connection (1001), the listener and its sockets."""
        await super().close()
        await self.transports.abort()

    # ---- market loop ------------------------------------------------------------------------

    def step(self, now_ns: int) -> None:
        """Advance the market to ``now_ns``: route data, fill limits, enforce auth windows."""
        self._deliver_updates(self.broker.tick(now_ns))
        # Stocks trade in the regular session only (IEX and SIP print nothing after hours).
        trades = [
            t for t in self.sim.trades_due(now_ns) if self.broker.trades_now(t.symbol, now_ns)
        ]
        self._route_data(self.market.on_trades(trades, now_ns))
        self._deliver_updates(self.broker.on_trades(trades, now_ns))
        for conn in list(self.connections.values()):
            if conn.data is not None and not conn.data.authenticated and not conn.data.closed:
                self._send_reply(conn, conn.data.tick(now_ns))

    def _serves(self, conn: _Conn, symbol: str) -> bool:
        assert conn.data is not None
        if conn.data.feed.asset_class == "crypto":
            return is_crypto(symbol)
        if conn.data.feed.path == "/v2/test":
            return symbol == TEST_SYMBOL
        return not is_crypto(symbol) and symbol != TEST_SYMBOL

    def publish(self, outgoing: list[Outgoing]) -> None:
        """Send messages (e.g. from ``market.inject``) to every subscribed data client."""
        self._route_data(outgoing)

    def _route_data(self, outgoing: list[Outgoing]) -> None:
        if not outgoing:
            return
        for conn in list(self.connections.values()):
            session = conn.data
            if session is None or not session.authenticated or session.closed:
                continue
            batch = [
                out
                for out in outgoing
                if self._serves(conn, out.symbol) and session.wants(out.channel, out.symbol)
            ]
            for i in range(0, len(batch), MAX_BATCH):
                chunk = batch[i : i + MAX_BATCH]
                records = [
                    {
                        "ev": "alpaca_trade_sent",
                        "conn": conn.conn_id,
                        "feed": session.feed.path,
                        "symbol": out.symbol,
                        "trade_id": out.message["i"],
                        "price": out.message["p"],
                        "size": out.message["s"],
                        "t": out.message["t"].ns,
                    }
                    for out in chunk
                    if out.message["T"] == "t"
                ]
                self._offer(conn, [out.message for out in chunk], records)

    def _deliver_updates(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for conn in list(self.connections.values()):
                if conn.trading is None or not conn.trading.listening("trade_updates"):
                    continue
                order = event["order"]
                record = {
                    "ev": "alpaca_trade_update",
                    "conn": conn.conn_id,
                    "event": event["event"],
                    "order_id": order["id"],
                    "client_order_id": order["client_order_id"],
                    "symbol": order["symbol"],
                    "status": order["status"],
                    "qty": event.get("qty"),
                    "price": event.get("price"),
                    "timestamp": event["timestamp"],
                }
                self._offer(conn, {"stream": "trade_updates", "data": event}, [record])

    # ---- connections ------------------------------------------------------------------------

    def _offer(self, conn: _Conn, payload: Any, records: list[dict[str, Any]]) -> None:
        if conn.overflowed:
            return
        if conn.outbox.qsize() >= self.outbox_limit:
            conn.overflowed = True
            log.warning("client too slow, disconnecting", extra={"conn": conn.conn_id})
            while not conn.outbox.empty():
                conn.outbox.get_nowait()
            if conn.data is not None:
                reply = conn.data.slow_client()
                conn.outbox.put_nowait((reply.messages, []))
            conn.outbox.put_nowait((_CLOSE, []))
            return
        conn.outbox.put_nowait((payload, records))

    def _send_reply(self, conn: _Conn, reply: Reply) -> None:
        for message in reply.messages:
            self._offer(conn, [message], [])
        if reply.close_code is not None:
            conn.outbox.put_nowait((_CLOSE, []))

    async def _writer(self, conn: _Conn) -> None:
        while True:
            payload, records = await conn.outbox.get()
            if payload is _CLOSE:
                await conn.ws.close(code=1008, message=b"closed by the venue")
                return
            if conn.data is not None:
                frame = encode_data_frame(payload, use_msgpack=conn.use_msgpack)
            else:
                frame = encode_trading_frame(payload, use_msgpack=conn.use_msgpack)
            if isinstance(frame, str):
                await conn.ws.send_str(frame)
            else:
                await conn.ws.send_bytes(frame)
            self.frames_sent += 1
            for record in records:
                fields = {k: v for k, v in record.items() if k != "ev"}
                self.ground_truth.write(record["ev"], ts=self.clock(), **fields)

    async def _serve(self, request: web.Request, conn: _Conn) -> web.WebSocketResponse:
        ws = conn.ws
        self.connections[conn.conn_id] = conn
        self.ground_truth.write(
            "alpaca_connect", conn=conn.conn_id, path=conn.path, ts=self.clock()
        )
        log.info("connected", extra={"conn": conn.conn_id, "path": conn.path})
        writer = asyncio.create_task(self._writer(conn), name=f"alpaca-writer-{conn.conn_id}")
        try:
            if conn.data is not None:
                self._send_reply(conn, conn.data.opening())
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                if conn.data is not None:
                    self._on_data_message(conn, msg.data)
                elif conn.trading is not None:
                    for message in conn.trading.receive(msg.data):
                        self._offer(conn, message, [])
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            self.connections.pop(conn.conn_id, None)
            if conn.data is not None:
                conn.data.close()
            self.ground_truth.write(
                "alpaca_disconnect", conn=conn.conn_id, code=ws.close_code, ts=self.clock()
            )
            log.info("disconnected", extra={"conn": conn.conn_id, "code": ws.close_code})
        return ws

    def _on_data_message(self, conn: _Conn, data: str | bytes) -> None:
        assert conn.data is not None
        now_ns = self.clock()
        reply = conn.data.receive(data, now_ns)
        self._send_reply(conn, reply)
        for symbol in reply.added.get("orderbooks", []):
            targets = self.sim.symbols if symbol == "*" else (symbol,)
            for target in targets:
                snapshot = self.market.orderbook_snapshot(target, now_ns)
                if snapshot is not None:
                    self._offer(conn, [snapshot], [])

    async def _prepare(self, request: web.Request) -> tuple[web.WebSocketResponse, bool] | None:
        if self._closing:
            return None
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        use_msgpack = "msgpack" in request.headers.get("Content-Type", "").lower()
        return ws, use_msgpack

    async def _handle_data(self, request: web.Request) -> web.StreamResponse:
        feed = FEEDS[request.path]

        def session(conn_id: int) -> dict[str, Any]:
            data = DataSession(
                feed,
                conn_id,
                self.clock(),
                credentials=self.credentials,
                registry=self.registry,
                entitled=feed.path in self.entitled_feeds,
                auth_timeout_s=self.auth_timeout_s,
                header_key=request.headers.get("APCA-API-KEY-ID"),
                header_secret=request.headers.get("APCA-API-SECRET-KEY"),
            )
            return {"data": data}

        return await self._accept(request, session)

    async def _handle_trading(self, request: web.Request) -> web.StreamResponse:
        return await self._accept(
            request,
            lambda conn_id: {"trading": TradingSession(conn_id, credentials=self.credentials)},
        )

    async def _accept(
        self, request: web.Request, session: Callable[[int], dict[str, Any]]
    ) -> web.StreamResponse:
        """Upgrade the request (503 while refused), number the connection, start its
        ``session`` (the ``data`` or ``trading`` one, given the connection id) and serve it."""
        prepared = await self._prepare(request)
        if prepared is None:
            return web.Response(status=503)
        ws, use_msgpack = prepared
        conn_id = next(self._ids)
        conn = _Conn(conn_id, request.path, ws, use_msgpack, **session(conn_id))
        return await self._serve(request, conn)

    # ---- REST -------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        result = self.api.handle(
            request.method, request.path, request.query, request.headers, body, self.clock()
        )
        if result.order_record is not None:
            self.ground_truth.write("alpaca_order", ts=self.clock(), **result.order_record)
        self._deliver_updates(result.events)
        if result.body is None:
            return web.Response(status=result.status)
        return web.Response(
            status=result.status, body=orjson.dumps(result.body), content_type="application/json"
        )

    async def _inject(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            out = self.market.inject(str(body["kind"]), str(body["symbol"]), self.clock())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self._route_data([out])
        return web.json_response({"injected": out.message["T"], "symbol": out.symbol})

    async def _expire(self, request: web.Request) -> web.Response:
        events = self.broker.expire(self.clock())
        self._deliver_updates(events)
        return web.json_response({"expired": len(events)})

    async def _reject_next(self, request: web.Request) -> web.Response:
        self.broker.reject_next += 1
        return web.json_response({"reject_next": self.broker.reject_next})

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    def status(self) -> dict[str, Any]:
        """Return connections, subscriptions, prices, orders and the account, for tests."""
        return {
            "connections": [
                {
                    "conn": c.conn_id,
                    "path": c.path,
                    "msgpack": c.use_msgpack,
                    "authenticated": (
                        c.data.authenticated if c.data else bool(c.trading and c.trading.authorized)
                    ),
                    "subscriptions": (
                        c.data.subscription_message() if c.data and c.data.authenticated else None
                    ),
                }
                for c in self.connections.values()
            ],
            "last_price": {s: self.sim.last_price(s) for s in self.sim.symbols},
            "orders": len(self.broker.orders),
            "account": self.broker.account_json(),
            "frames_sent": self.frames_sent,
        }
