"""Embed the Binance venue connection in another program: no Redis, events in, events out.

:class:`BinanceClient` opens the combined market stream (and, with a key, the WebSocket API's
user-data subscription), subscribes symbols, and yields normalised :mod:`common.schema` events
(:class:`~common.schema.Trade`, :class:`~common.schema.Quote`,
:class:`~common.schema.OrderUpdate`). A dropped connection is reopened with capped, jittered
backoff and its subscriptions are sent again; a rejected key raises :class:`AuthError` once::

    async with BinanceClient(ws_url, ws_api_url, rest_url, api_key, api_secret) as client:
        await client.subscribe_to_ticker("BTCUSDT")
        await client.subscribe_to_order_updates()
        async for event in client.process_incoming_data():
            print(event)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from common.backoff import Backoff
from common.errors import AuthError, ConfigError, DecodeError, RateLimited, VenueError
from common.links import retry_after_from_header
from common.schema import Event
from common.units import MS
from venues.binance.events import normalise
from venues.binance.session import classify_reply, user_data_subscribe_request
from venues.binance.wire import stream_name

__all__ = ["BinanceClient"]

log = logging.getLogger("tickpipe.ingestor.client")

_CLOSED = object()


class BinanceClient:
    """A self-healing Binance market + user-data connection that yields normalised events."""

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
    ) -> None:
        self.ws_url = ws_url.rstrip("/")
        self.ws_api_url = ws_api_url
        self.rest_url = rest_url.rstrip("/")
        self.api_key = api_key or ""
        self.api_secret = api_secret or ""
        self.channels = channels
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.streams: list[str] = []
        self.errors = 0
        self._market: ClientConnection | None = None
        self._private: ClientConnection | None = None
        self._events: asyncio.Queue[object] = asyncio.Queue(maxsize=10_000)
        self._readers: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._closed = False
        self._fatal: BaseException | None = None
        self._order_updates = False

    async def __aenter__(self) -> BinanceClient:
        await self.connect_to_websocket()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connecting ----------------------------------------------------------------------------
    async def connect_to_websocket(self) -> None:
        """Open the market-data connection (bare ``/stream``) and start reading it."""
        self._market = await self._open_market()
        self._readers.append(asyncio.create_task(self._read_forever("market")))

    async def _open_market(self) -> ClientConnection:
        ws = await connect(f"{self.ws_url}/stream", ping_interval=20, ping_timeout=20)
        if self.streams:
            await self._send_subscribe(ws, self.streams)
        return ws

    async def authenticate_websocket(self) -> None:
        """Open the WebSocket API and subscribe the user-data stream with the signed request.

        Raises :class:`AuthError` when the venue rejects the key or signature, and
        :class:`ConfigError` when no key pair was given.
        """
        if not (self.api_key and self.api_secret):
            raise ConfigError("authenticate_websocket needs api_key and api_secret")
        self._private = await self._open_private()
        self._readers.append(asyncio.create_task(self._read_forever("private")))

    async def _open_private(self) -> ClientConnection:
        ws = await connect(self.ws_api_url, ping_interval=20, ping_timeout=20)
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
    async def subscribe_to_ticker(self, symbol: str) -> None:
        """Subscribe the trades and best bid/offer (the configured channels) of ``symbol``."""
        new = [stream_name(symbol, c) for c in self.channels]
        new = [s for s in new if s not in self.streams]
        self.streams.extend(new)
        if self._market is not None and new:
            await self._send_subscribe(self._market, new)

    async def subscribe_to_order_updates(self) -> None:
        """Receive this account's order updates (authenticates first if needed)."""
        self._order_updates = True
        if self._private is None:
            await self.authenticate_websocket()

    async def _send_subscribe(self, ws: ClientConnection, streams: list[str]) -> None:
        for start in range(0, len(streams), 200):
            chunk = streams[start : start + 200]
            body = {"method": "SUBSCRIBE", "params": chunk, "id": next(self._ids)}
            await ws.send(orjson.dumps(body).decode())
            await asyncio.sleep(0.25)  # stays under 5 messages/s

    # -- reading -------------------------------------------------------------------------------
    async def process_incoming_data(
        self, callback: Callable[[Event], Awaitable[None] | None] | None = None
    ) -> AsyncIterator[Event]:
        """Yield normalised events until :meth:`close` (each also passed to ``callback``)."""
        while True:
            item = await self._events.get()
            if item is _CLOSED:
                if self._fatal is not None:
                    raise self._fatal
                return
            assert isinstance(item, Event)
            if callback is not None:
                result = callback(item)
                if result is not None:
                    await result
            yield item

    async def _read_forever(self, which: str) -> None:
        while not self._closed:
            ws = self._market if which == "market" else self._private
            opened: float | None = None
            try:
                if ws is None:
                    ws = await (self._open_market() if which == "market" else self._open_private())
                    if which == "market":
                        self._market = ws
                    else:
                        self._private = ws
                opened = time.monotonic()
                async for frame in ws:
                    self._take(frame)
                raise ConnectionError(f"closed by the venue: code {ws.close_code}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                try:
                    delay = self.handle_websocket_error(exc)
                except Exception as fatal:
                    self._fatal = fatal
                    self._events.put_nowait(_CLOSED)
                    return
                if opened is not None:
                    self.backoff.connection_ended(time.monotonic() - opened)
                if which == "market":
                    self._market = None
                else:
                    self._private = None
                await asyncio.sleep(delay)

    def _take(self, frame: str | bytes) -> None:
        try:
            event = normalise(frame, ts_recv=self.clock())
        except DecodeError as exc:
            log.warning("skipping a malformed frame: %s", exc)
            return
        if event is not None:
            if self._events.full():
                self._events.get_nowait()  # the consumer is behind: drop the oldest
            self._events.put_nowait(event)

    def handle_websocket_error(self, error: BaseException) -> float:
        """Decide what an error means: return the delay before reconnecting, or raise if fatal.

        A rejected key (:class:`AuthError`) is raised as is; a rate limit or a 418/429 handshake
        waits at least the venue's ``Retry-After``; anything else backs off (capped, jittered).
        """
        self.errors += 1
        if isinstance(error, AuthError):
            raise error
        if isinstance(error, RateLimited):
            self.backoff.wait_at_least(error.retry_after_s)
        elif isinstance(error, InvalidStatus) and error.response.status_code in (418, 429):
            header = error.response.headers.get("Retry-After")
            self.backoff.wait_at_least(retry_after_from_header(header) or 0.0)
        elif not isinstance(
            error, OSError | TimeoutError | WebSocketException | VenueError | ConnectionClosed
        ):
            raise error
        delay = self.backoff.next_delay_s()
        log.warning("venue connection lost (%s); reconnecting in %.2f s", error, delay)
        return delay

    async def close(self) -> None:
        """Close both connections and end :meth:`process_incoming_data`."""
        self._closed = True
        for ws in (self._market, self._private):
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
        for task in self._readers:
            task.cancel()
        if self._readers:
            await asyncio.wait(self._readers)
        self._events.put_nowait(_CLOSED)
