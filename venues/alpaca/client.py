"""Embed an Alpaca connection in another program: typed events in, orders out, no Redis.

:class:`AlpacaClient` opens a market-data stream (a stock feed, ``/v2/iex`` by default, or
``crypto``), authenticates, subscribes symbols, and yields typed events:
:class:`~common.schema.Trade`, :class:`~common.schema.Quote`, :class:`~common.schema.Bar`
(minute bars; ``updatedBars`` revisions with ``revision`` 1; daily bars),
:class:`~venues.clients.BookUpdate` (crypto ``orderbooks``: the venue sends the whole book on
subscription, ``resynced``, then changes) and, from the trading stream (``trade_updates``),
:class:`~common.schema.OrderUpdate`.
Orders go over the Trading API (REST): ``POST /v2/orders`` with the client order id as the
idempotency key (Alpaca keeps it unique for ever: an unclear outcome or a repeated id is settled by
``GET /v2/orders:by_client_order_id``, never by a second order)::

    async with AlpacaClient(data_url, trading_url, rest_url, api_key, api_secret) as client:
        await client.subscribe_to_ticker("AAPL")
        await client.subscribe_to_order_updates()
        order = await client.place_order("AAPL", "buy", "1")
        async for event in client.process_incoming_data():
            print(event)

The sessions are :mod:`venues.alpaca.session`'s, the parsers :mod:`venues.alpaca.wire`'s, the order
requests :mod:`venues.alpaca.orders`' and :class:`~venues.alpaca.order_adapter.AlpacaOrders`'; the
slow-consumer policy, reconnects and ``close()`` are :mod:`venues.clients`'s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import (
    ConfigError,
    DecodeError,
    VenueError,
)
from tickpipe.common.schema import Event, OrderIntent
from tickpipe.common.tls import ws_ssl
from tickpipe.venues.alpaca import wire
from tickpipe.venues.alpaca.order_adapter import AlpacaOrders
from tickpipe.venues.alpaca.rest import AlpacaRest
from tickpipe.venues.alpaca.session import (
    Action,
    DataSession,
    Fail,
    Ready,
    Refused,
    TradingSession,
    auth_message,
    channels_for,
    decode_frame,
    encode_sends,
    upgrade_headers,
)
from tickpipe.venues.books import LocalBook
from tickpipe.venues.clients import AdapterClient, BookUpdate, Policy

__all__ = ["AlpacaClient", "feed_path"]

log = logging.getLogger("tickpipe.client")

#: Seconds the venue gets to greet, authenticate and subscribe a new connection.
HANDSHAKE_S = 10.0


def feed_path(feed: str) -> str:
    """Return the stream path of ``feed``: ``iex``, ``sip``, ``test`` or ``crypto``."""
    return "/v1beta3/crypto/us" if feed == "crypto" else f"/v2/{feed}"


class AlpacaClient(AdapterClient):
    """A self-healing Alpaca market-data + trading-stream connection that trades over REST."""

    venue = "alpaca"
    _orders: AlpacaOrders

    def __init__(
        self,
        data_url: str,
        trading_url: str,
        rest_url: str,
        api_key: str,
        api_secret: str,
        *,
        feed: str = "iex",
        channels: Sequence[str] = (),
        use_msgpack: bool = False,
        backoff: Backoff | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_events: int = 10_000,
        policy: Policy = "block",
        book_depth: int = 10,
        request_timeout_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(max_events, policy, backoff, clock, book_depth, ca_file)
        if not (api_key and api_secret):
            raise ConfigError("AlpacaClient needs api_key and api_secret (every stream needs them)")
        self.data_url = data_url.rstrip("/") + feed_path(feed)
        self.trading_url = trading_url
        self.api_key = api_key
        self.api_secret = api_secret
        self.channels = tuple(channels) or tuple(
            c for c in channels_for(feed) if c not in ("dailyBars", "statuses")
        )
        self.use_msgpack = use_msgpack
        self.symbols: list[str] = []
        self.books: dict[str, LocalBook] = {}
        self.refusals = 0  # non-fatal errors the venue reported (each logged)
        self.book_changes_skipped = 0  # orderbook changes that came before any whole book
        self._data: DataSession | None = None
        self._rest = AlpacaRest(
            rest_url, api_key=api_key, api_secret=api_secret, request_timeout_s=request_timeout_s
        )
        self._orders = AlpacaOrders(self._rest, clock=clock, order_id_of=self._no_order_id)

    def __repr__(self) -> str:  # the key pair never shows
        return f"AlpacaClient({self.data_url!r}, symbols={len(self.symbols)})"

    # -- connecting ----------------------------------------------------------------------------
    async def connect_to_websocket(self) -> None:
        """Open the market-data stream, authenticate and subscribe; start reading it.

        Raises :class:`AuthError` when the venue refuses the key or the feed.
        """
        ws = await self._open_data()
        self._read("data", ws, self._open_data, self._take_data, self.books.clear)

    async def _open_data(self) -> ClientConnection:
        session = DataSession(self.symbols, self.channels)
        headers = upgrade_headers("msgpack" if self.use_msgpack else "json")
        ws = await connect(
            self.data_url, ssl=ws_ssl(self.data_url), additional_headers=headers, ping_interval=20
        )
        self._data = session
        await self._handshake(ws, lambda frame: session.receive(decode_frame(frame)))
        return ws

    async def authenticate_websocket(self) -> None:
        """Open the trading stream, authenticate and listen to ``trade_updates``."""
        ws = await self._open_trading()
        self._read("trading", ws, self._open_trading, self._take_trading)

    async def _open_trading(self) -> ClientConnection:
        session = TradingSession()
        ws = await connect(self.trading_url, ssl=ws_ssl(self.trading_url), ping_interval=20)
        await self._act(ws, session.opening())
        await self._handshake(ws, lambda frame: session.receive(decode_frame(frame)))
        return ws

    async def _handshake(
        self, ws: ClientConnection, receive: Callable[[str | bytes], list[Action]]
    ) -> None:
        """Answer the session's actions until it is ready; raise its error if it fails."""
        try:
            async with asyncio.timeout(HANDSHAKE_S):
                while not await self._act(ws, receive(await ws.recv())):
                    pass
        except BaseException:
            await ws.close()
            raise

    async def _act(self, ws: ClientConnection, actions: list[Action]) -> bool:
        """Carry out a session's actions; return whether one said the session is ready."""
        ready = False
        auth = functools.partial(auth_message, self.api_key, self.api_secret)
        for message in encode_sends(actions, auth, use_msgpack=self.use_msgpack):
            await ws.send(message)
        for action in actions:
            if isinstance(action, Ready):
                ready = True
            elif isinstance(action, Refused):
                self.refusals += 1
                refusal = {"code": action.code, "why": action.text}
                log.warning("venue refused a request", extra=refusal)
            elif isinstance(action, Fail):
                raise action.error
        return ready

    # -- subscribing ---------------------------------------------------------------------------
    async def subscribe_to_ticker(self, symbol: str) -> None:
        """Subscribe ``symbol``'s channels, now and on every later connection."""
        if symbol not in self.symbols:
            self.symbols.append(symbol)
        ws = self._conns.get("data")
        if self._data is not None and ws is not None:
            await self._act(ws, self._data.change("subscribe", [symbol]))

    async def subscribe_to_order_updates(self) -> None:
        """Receive this account's order updates (opens the trading stream if needed)."""
        if "trading" not in self._conns:
            await self.authenticate_websocket()

    # -- reading -------------------------------------------------------------------------------
    async def _take_data(self, frame: str | bytes) -> None:
        ts_recv = self.clock()
        try:
            messages = decode_frame(frame)
        except DecodeError as exc:
            self.malformed += 1
            log.warning("skipping a malformed frame", extra={"error": str(exc)})
            return
        if self._data is not None and self._conns.get("data") is not None:
            ws = self._conns["data"]
            assert ws is not None
            await self._act(ws, self._data.receive(messages))
        for message in messages if isinstance(messages, list) else []:
            try:
                event = self._event(message, ts_recv)
            except DecodeError as exc:
                self.malformed += 1
                log.warning("skipping a malformed message", extra={"error": str(exc)})
                continue
            if event is not None:
                await self._events.put(event, ts_recv)

    def _event(self, message: Any, ts_recv: int) -> Event | None:
        kind = message.get("T") if isinstance(message, Mapping) else None
        if kind == "t":
            return wire.parse_trade(message, ts_recv=ts_recv)
        if kind == "q":
            return wire.parse_quote(message, ts_recv=ts_recv)
        if kind in wire.BAR_INTERVAL:
            return wire.parse_bar(message, revision=1 if kind == "u" else 0)
        if kind == "o":
            return self._book(message, ts_recv)
        return None

    def _book(self, message: Mapping[str, Any], ts_recv: int) -> BookUpdate | None:
        symbol = str(message.get("S", ""))
        bids = wire.book_levels(message.get("b"), "bids")
        asks = wire.book_levels(message.get("a"), "asks")
        reset = bool(message.get("r"))
        book = self.books.get(symbol)
        if reset:
            book = self.books[symbol] = LocalBook()
            book.replace(bids, asks)
        elif book is None:  # changes without the whole book first: no book to show yet
            self.book_changes_skipped += 1
            return None
        else:
            book.apply(bids, asks)
        top_bids, top_asks = book.top(self.book_depth)
        ts_event = wire.parse_time(message.get("t"), "orderbook time")
        return BookUpdate(self.venue, symbol, top_bids, top_asks, "", reset, ts_event, ts_recv)

    async def _take_trading(self, frame: str | bytes) -> None:
        ts_recv = self.clock()
        try:
            message = decode_frame(frame)
            if isinstance(message, Mapping) and message.get("stream") == "trade_updates":
                update = wire.parse_trade_update(message.get("data"), ts_recv=ts_recv)
                await self._events.put(update, ts_recv)
            elif isinstance(message, Mapping) and message.get("action") == "error":
                raise VenueError(f"Alpaca trading stream error: {message.get('data')}")
        except DecodeError as exc:
            self.malformed += 1
            log.warning("skipping a malformed trade update", extra={"error": str(exc)})

    # -- trading -------------------------------------------------------------------------------
    async def _send_order(self, intent: OrderIntent, time_in_force: str | None) -> dict[str, Any]:
        """``POST /v2/orders`` through the adapter (no time in force: its choice by symbol)."""
        placer = self._orders.placer(intent, time_in_force=time_in_force)
        return await self._retrying(placer, "place")

    # -- closing -------------------------------------------------------------------------------
    async def _close_connections(self) -> None:
        await super()._close_connections()
        await self._rest.aclose()
