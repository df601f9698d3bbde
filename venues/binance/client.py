"""Embed a Binance connection in another program: typed events in, orders out, no Redis.

:class:`BinanceClient` opens the combined market stream (and, with a key, the WebSocket API's
user-data subscription), subscribes symbols, and yields typed events: :class:`~common.schema.Trade`,
:class:`~common.schema.Quote` (``bookTicker``), :class:`~venues.clients.BookUpdate` (channel
``depth@100ms``: a book kept from a REST snapshot plus diffs, rebuilt after a gap or a
reconnect), :class:`~common.schema.Bar` (``kline_1m``...) and
:class:`~common.schema.OrderUpdate`. Orders go over the WebSocket API (``order.place``,
``order.cancel``, ``order.status``, ``openOrders.status``), signed with the key pair; the client
order id is the idempotency key: an unclear outcome is settled by looking that id up, never by
sending again. A dropped connection is reopened with capped, jittered backoff and its
subscriptions are sent again; a rejected key raises :class:`AuthError` once::

    async with BinanceClient(ws_url, ws_api_url, rest_url, api_key, api_secret) as client:
        await client.subscribe_to_ticker("BTCUSDT")
        await client.subscribe_to_order_updates()
        order = await client.place_order("BTCUSDT", "BUY", "0.001")
        async for event in client.process_incoming_data():
            print(event)

The slow-consumer policy, ``close()`` and fatal errors are :mod:`venues.clients`'s. This module is
glue: parsing is :mod:`venues.binance.events`, signing and answers :mod:`venues.binance.orders`,
the request connection :class:`~venues.binance.ws_api.BinanceWsApi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import (
    ConfigError,
    DecodeError,
    RateLimited,
    VenueError,
)
from tickpipe.common.links import retry_after_from_header
from tickpipe.common.messages import DepthDiff, DepthSnapshot
from tickpipe.common.schema import Event, OrderIntent
from tickpipe.common.tls import http_connector, ws_ssl
from tickpipe.common.units import MS
from tickpipe.venues.binance.events import normalise
from tickpipe.venues.binance.marketdata import REST_DEPTH, parse_rest
from tickpipe.venues.binance.orders import (
    SignOptions,
    list_result_of,
    open_orders_params,
    place_params,
    result_of,
    status_params,
)
from tickpipe.venues.binance.session import classify_reply, user_data_subscribe_request
from tickpipe.venues.binance.wire import stream_name
from tickpipe.venues.binance.ws_api import BinanceWsApi
from tickpipe.venues.books import SequencedBook, Step
from tickpipe.venues.clients import BookUpdate, OrderState, Policy, VenueClient

__all__ = ["BinanceClient"]

log = logging.getLogger("tickpipe.client")


class BinanceClient(VenueClient):
    """A self-healing Binance market + user-data connection that yields typed events and trades."""

    venue = "binance"
    default_time_in_force = "GTC"

    def __init__(
        self,
        ws_url: str,
        ws_api_url: str,
        rest_url: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        channels: tuple[str, ...] = ("trade", "bookTicker"),
        backoff: Backoff | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_events: int = 10_000,
        policy: Policy = "block",
        book_depth: int = 10,
        recv_window_ms: int = 5000,
        request_timeout_s: float = 10.0,
        ca_file: str | None = None,
    ) -> None:
        super().__init__(max_events, policy, backoff, clock, book_depth, ca_file)
        self.ws_url = ws_url.rstrip("/")
        self.ws_api_url = ws_api_url
        self.rest_url = rest_url.rstrip("/")
        self.api_key = api_key or ""
        self.api_secret = api_secret or ""
        self.channels = channels
        self.recv_window_ms = recv_window_ms
        self.streams: list[str] = []
        self.books: dict[str, SequencedBook] = {}
        self._ids = itertools.count(1)
        self._api = BinanceWsApi(ws_api_url, request_timeout_s=request_timeout_s)
        self._http: aiohttp.ClientSession | None = None
        self._snapshots: set[str] = set()  # symbols whose snapshot is being fetched

    def __repr__(self) -> str:  # the key pair never shows
        return f"BinanceClient({self.ws_url!r}, streams={len(self.streams)})"

    # -- connecting ----------------------------------------------------------------------------
    async def connect_to_websocket(self) -> None:
        """Open the market-data connection (bare ``/stream``) and start reading it."""
        ws = await self._open_market()
        self._read("market", ws, self._open_market, self._take, self._forget_books)

    async def _open_market(self) -> ClientConnection:
        url = f"{self.ws_url}/stream"
        ws = await connect(url, ssl=ws_ssl(url), ping_interval=20, ping_timeout=20)
        if self.streams:
            await self._send_subscribe(ws, self.streams)
        return ws

    async def authenticate_websocket(self) -> None:
        """Open the WebSocket API and subscribe the user-data stream with the signed request.

        Raises :class:`AuthError` when the venue rejects the key or signature, and
        :class:`ConfigError` when no key pair was given.
        """
        self._need_keys("authenticate_websocket")
        ws = await self._open_private()
        self._read("private", ws, self._open_private, self._take)

    def _need_keys(self, what: str) -> None:
        if not (self.api_key and self.api_secret):
            raise ConfigError(f"{what} needs api_key and api_secret")

    async def _open_private(self) -> ClientConnection:
        ws = await connect(
            self.ws_api_url, ssl=ws_ssl(self.ws_api_url), ping_interval=20, ping_timeout=20
        )
        request_id = next(self._ids)
        await ws.send(
            user_data_subscribe_request(
                self.api_key,
                self.api_secret,
                timestamp_ms=self.clock() // MS,
                request_id=request_id,
            )
        )
        async with asyncio.timeout(10):
            while True:
                reply = classify_reply(await ws.recv(), now_ms=self.clock() // MS)
                if reply is not None and reply.id == request_id:
                    break
        if reply.error is not None:
            await ws.close()
            raise reply.error
        return ws

    # -- subscribing ---------------------------------------------------------------------------
    async def subscribe_to_ticker(self, symbol: str, channels: tuple[str, ...] = ()) -> None:
        """Subscribe ``symbol``'s channels (default: the client's ``channels``)."""
        new = [stream_name(symbol, c) for c in channels or self.channels]
        new = [s for s in new if s not in self.streams]
        self.streams.extend(new)
        market = self._conns.get("market")
        if market is not None and new:
            await self._send_subscribe(market, new)

    async def subscribe_to_order_updates(self) -> None:
        """Receive this account's order updates (authenticates first if needed)."""
        if "private" not in self._conns:
            await self.authenticate_websocket()

    async def _send_subscribe(self, ws: ClientConnection, streams: list[str]) -> None:
        for start in range(0, len(streams), 200):
            chunk = streams[start : start + 200]
            body = {"method": "SUBSCRIBE", "params": chunk, "id": next(self._ids)}
            await ws.send(orjson.dumps(body).decode())
            await asyncio.sleep(0.25)  # stays under 5 messages/s

    # -- reading -------------------------------------------------------------------------------
    async def _take(self, frame: str | bytes) -> None:
        ts_recv = self.clock()
        try:
            value = normalise(frame, ts_recv=ts_recv)
        except DecodeError as exc:
            self.malformed += 1
            log.warning("skipping a malformed frame", extra={"error": str(exc)})
            return
        if isinstance(value, DepthDiff):
            book = self.books.setdefault(value.symbol, SequencedBook())
            await self._book_step(value.symbol, book.on_diff(value), value.ts_event, ts_recv)
        elif isinstance(value, Event):
            await self._events.put(value, ts_recv)

    async def _book_step(self, symbol: str, step: Step, ts_event: int, ts_recv: int) -> None:
        book = self.books[symbol]
        if step.gap:
            log.warning("order book gap: resyncing from a snapshot", extra={"symbol": symbol})
        if step.want_snapshot and symbol not in self._snapshots:
            self._snapshots.add(symbol)
            self._spawn(self._fetch_snapshot(symbol), f"binance-snapshot-{symbol}")
        if step.changed and book.book is not None:
            bids, asks = book.book.top(self.book_depth)
            update = BookUpdate(
                self.venue,
                symbol,
                bids,
                asks,
                str(book.update_id),
                step.resynced,
                ts_event,
                ts_recv,
            )
            await self._events.put(update, ts_recv)

    async def _fetch_snapshot(self, symbol: str) -> None:
        """Fetch ``GET /api/v3/depth`` (retrying with backoff) and rebuild the book from it."""
        backoff = Backoff(base_s=0.2, cap_s=10.0)
        try:
            while not self._closed:
                try:
                    body = await self._get("/api/v3/depth", {"symbol": symbol, "limit": "1000"})
                    ts_recv = self.clock()
                    text = orjson.dumps({"symbol": symbol, "response": body}).decode()
                    snapshot = parse_rest(REST_DEPTH, text, ts_recv=ts_recv, entry_id="rest")
                except (aiohttp.ClientError, TimeoutError, DecodeError, VenueError) as exc:
                    log.warning(
                        "depth snapshot failed", extra={"symbol": symbol, "error": str(exc)}
                    )
                    await asyncio.sleep(backoff.next_delay_s())
                    continue
                assert isinstance(snapshot, DepthSnapshot)
                book = self.books.setdefault(symbol, SequencedBook())
                step = book.on_snapshot(snapshot)
                self._snapshots.discard(symbol)
                await self._book_step(symbol, step, ts_recv, ts_recv)
                return
        finally:
            self._snapshots.discard(symbol)

    async def _get(self, path: str, query: dict[str, str]) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10), connector=http_connector()
            )
        async with self._http.get(self.rest_url + path, params=query) as response:
            body = await response.read()
            if response.status in (418, 429):
                header = response.headers.get("Retry-After")
                wait_s = retry_after_from_header(header) or 1.0
                raise RateLimited(f"REST {path}: status {response.status}", retry_after_s=wait_s)
            if response.status != 200:
                raise VenueError(f"REST {path}: status {response.status}")
            return orjson.loads(body)

    def _forget_books(self) -> None:
        for symbol in list(self.books):
            self.books[symbol] = SequencedBook()

    # -- trading -------------------------------------------------------------------------------
    def _auth(self) -> SignOptions:
        self._need_keys("trading")
        return {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "recv_window_ms": self.recv_window_ms,
        }

    async def _request(
        self, send: Callable[[], Awaitable[dict[str, Any]]], what: str
    ) -> dict[str, Any]:
        """Send a request and return its result (see ``_retrying`` for rate limits)."""

        async def call() -> dict[str, Any]:
            return result_of(await send(), now_ms=self.clock() // MS)

        return await self._retrying(call, what)

    async def _send_order(self, intent: OrderIntent, time_in_force: str | None) -> dict[str, Any]:
        """Send ``order.place`` (Binance keeps client ids unique among open orders only: the
        id of an order still open is refused as a duplicate, and the lookup answers it)."""

        def send() -> Awaitable[dict[str, Any]]:
            params = place_params(
                intent,
                timestamp_ms=self.clock() // MS,
                time_in_force=(time_in_force or "GTC").upper(),
                **self._auth(),
            )
            return self._api.place(params)

        return await self._request(send, "order.place")

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order by its client id; raise :class:`OrderNotFound` if not open."""
        return await self._by_id("order.cancel", symbol, client_order_id)

    async def order_status(self, symbol: str, client_order_id: str) -> OrderState:
        """Look an order up by its client id; raise :class:`OrderNotFound` if the venue has none."""
        return await self._by_id("order.status", symbol, client_order_id)

    async def _by_id(self, method: str, symbol: str, client_order_id: str) -> OrderState:
        """Send ``order.cancel`` or ``order.status`` (same params: the order's client id)."""

        def send() -> Awaitable[dict[str, Any]]:
            # cancel_params is status_params: both name the order by its client id
            params = status_params(
                symbol, client_order_id, timestamp_ms=self.clock() // MS, **self._auth()
            )
            return self._api.request(method, params)

        return OrderState.from_result(self.venue, await self._request(send, method))

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """List the open orders (of ``symbol``, or every symbol)."""
        params = open_orders_params(timestamp_ms=self.clock() // MS, symbol=symbol, **self._auth())
        listed = list_result_of(await self._api.open_orders(params), now_ms=self.clock() // MS)
        return [OrderState.from_result(self.venue, o) for o in listed if isinstance(o, dict)]

    # -- closing -------------------------------------------------------------------------------
    async def _close_connections(self) -> None:
        await super()._close_connections()
        with contextlib.suppress(Exception):
            await self._api.aclose()
        if self._http is not None:
            await self._http.close()
