"""Embed the IBKR gateway connection in another program: no Redis, events in, events out.

:class:`IbkrClient` keeps the gateway session (``/tickle``, re-authentication,
``/iserver/accounts``), opens its WebSocket, subscribes level-1 data of symbols (conids looked
up once) and live orders, and yields normalised :mod:`common.schema` events:
:class:`~common.schema.Quote` and :class:`~common.schema.Trade` (IBKR's sampled last trade,
merged from changed-fields updates by :func:`common.l1.merge_l1`) and
:class:`~common.schema.OrderUpdate` (``sor``). The pure session
(:mod:`venues.ibkr.session`) re-sends ``smd`` before the gateway's 10-minute expiry and keeps
the session alive; a dropped socket is reopened with capped, jittered backoff and every
subscription sent again; REST goes through the pacing budget::

    async with IbkrClient("https://localhost:5000/v1/api", "wss://localhost:5000/v1/api/ws",
                          verify_tls=False) as client:
        await client.authenticate_websocket()
        await client.subscribe_to_ticker("AAPL")
        await client.subscribe_to_order_updates()
        async for event in client.process_incoming_data():
            print(event)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tickpipe.common.backoff import Backoff
from tickpipe.common.client_events import (
    ClientContext,
    EventQueue,
    read_forever,
    reconnect_delay,
)
from tickpipe.common.errors import AuthError, DecodeError
from tickpipe.common.l1 import merge_l1
from tickpipe.common.links import decoded_object
from tickpipe.common.schema import Event
from tickpipe.common.tls import ws_ssl
from tickpipe.venues.ibkr.pacing import RestBudget
from tickpipe.venues.ibkr.rest import IbkrRest
from tickpipe.venues.ibkr.session import (
    PRIVATE_TOPICS,
    Action,
    Fail,
    GatewaySession,
    Reauthenticate,
    Send,
    Tickle,
)
from tickpipe.venues.ibkr.wire import order_update, parse_smd

__all__ = ["IbkrClient"]

log = logging.getLogger("tickpipe.client")


class IbkrClient(ClientContext):
    """A self-healing IBKR gateway connection that yields normalised events."""

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        *,
        verify_tls: bool = True,
        budget: RestBudget | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ws_url = ws_url
        self.verify_tls = verify_tls
        self.rest = IbkrRest(rest_url, verify_tls=verify_tls, budget=budget)
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.symbols: list[str] = []
        self.order_updates = False
        self.errors = 0
        self.token = ""
        self.session: GatewaySession | None = None
        self._ws: ClientConnection | None = None
        self._views: dict[str, dict[str, str]] = {}
        self._events = EventQueue()
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._authenticated = asyncio.Event()

    # -- connecting ----------------------------------------------------------------------------
    async def connect_to_websocket(self) -> None:
        """Prepare the session over REST, open the socket and start reading it."""
        self._ws = await self._open()
        self._reader = asyncio.create_task(self._read_forever())

    async def _prepare(self) -> None:
        tickle = await self.rest.tickle()
        self.token = str(tickle.get("session") or "")
        status = tickle.get("iserver", {}).get("authStatus", {})
        if not (isinstance(status, dict) and status.get("authenticated")):
            await self._reauthenticate()
        else:
            await self.rest.accounts()

    async def _reauthenticate(self) -> None:
        await self.rest.reauthenticate()
        for _ in range(20):
            if (await self.rest.auth_status()).get("authenticated"):
                await self.rest.accounts()  # the gateway wants it again before market data
                return
            await asyncio.sleep(1.0)
        raise AuthError("the IBKR gateway session stays unauthenticated: log in in its web page")

    async def _open(self) -> ClientConnection:
        await self._prepare()
        conids = list((await self.rest.conids_of(self.symbols)).values())
        topics = PRIVATE_TOPICS if self.order_updates else ()
        self.session = GatewaySession(conids, self.clock(), topics=topics)
        self._authenticated.clear()
        context = ws_ssl(self.ws_url, self.verify_tls)
        ws = await connect(self.ws_url, ssl=context, ping_interval=20, ping_timeout=20)
        await ws.send(orjson.dumps({"session": self.token}).decode())
        return ws

    async def authenticate_websocket(self) -> None:
        """Wait until the gateway says the socket's session is authenticated (``sts``)."""
        async with asyncio.timeout(15):
            await self._authenticated.wait()

    # -- subscribing ---------------------------------------------------------------------------
    async def subscribe_to_ticker(self, symbol: str) -> None:
        """Subscribe level-1 data (quotes and last trades) of ``symbol`` (a US stock)."""
        symbol = symbol.upper()
        if symbol in self.symbols:
            return
        self.symbols.append(symbol)
        conid = (await self.rest.conids_of([symbol]))[symbol]
        if self.session is not None:
            await self._perform(self.session.change("subscribe", [conid], self.clock()))

    async def subscribe_to_order_updates(self) -> None:
        """Subscribe live orders (``sor``), executions and PnL, now and after each reconnect."""
        self.order_updates = True
        if self.session is not None:
            self.session.topics = PRIVATE_TOPICS
            if self.session.state == "streaming":
                await self._perform([Send(f"{t}+{{}}") for t in PRIVATE_TOPICS])

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send) and self._ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(action.text)
            elif isinstance(action, Tickle):
                self._spawn(self.rest.tickle())
            elif isinstance(action, Reauthenticate):
                self._spawn(self._reauthenticate())
            elif isinstance(action, Fail):
                raise action.error

    def _spawn(self, work: Awaitable[object]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # the next keep-alive retries; logged, counted
                self.errors += 1
                log.warning("IBKR REST call failed: %s", exc)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- reading -------------------------------------------------------------------------------
    def process_incoming_data(
        self, callback: Callable[[Event], Awaitable[None] | None] | None = None
    ) -> AsyncIterator[Event]:
        """Yield normalised events until :meth:`close` (each also passed to ``callback``)."""
        return self._events.events(callback)

    async def _read_forever(self) -> None:
        async def reopen() -> ClientConnection:
            self._ws = await self._open()
            return self._ws

        def dropped() -> None:
            self._ws = None

        await read_forever(
            lambda: self._ws,
            reopen,
            self._take,
            closed=lambda: self._closed,
            verdict=self.handle_websocket_error,
            backoff=self.backoff,
            dropped=dropped,
            fail=self._events.end,
        )

    async def _take(self, frame: str | bytes) -> None:
        now = self.clock()
        message = decoded_object(frame)
        if message is None or self.session is None:
            return
        await self._perform(self.session.receive(message, now))
        if self.session.state == "streaming":
            self._authenticated.set()
        topic = message.get("topic")
        try:
            if isinstance(topic, str) and topic.startswith("smd+") and "error" not in message:
                self._market(message, now)
            elif topic == "sor" and isinstance(message.get("args"), list):
                for entry in message["args"]:
                    if isinstance(entry, dict):
                        self._put(order_update(entry, now))
        except DecodeError as exc:
            log.warning("skipping a malformed message: %s", exc)

    def _market(self, message: dict[str, object], now: int) -> None:
        symbols = {c: s for s, c in self.rest.conids.items()}
        symbol = symbols.get(int(str(message.get("conid", "0"))))
        if symbol is None:
            return
        update = parse_smd(message, symbol, now)
        if update is None:
            return
        view = self._views.setdefault(symbol, {})
        quote, trade, _ = merge_l1(view, update, venue="ibkr", src=str(update.update_ms))
        for event in (quote, trade):
            if event is not None:
                self._put(event)

    def _put(self, event: Event) -> None:
        self._events.put(event)

    def handle_websocket_error(self, error: BaseException) -> float:
        """Decide what an error means: return the delay before reconnecting, or raise if fatal.

        An unauthenticated session that stays so (:class:`AuthError`) is raised; a 429 waits the
        penalty; anything else a connection can suffer backs off (capped, jittered).
        """
        self.errors += 1
        return reconnect_delay(error, self.backoff, "ibkr")

    async def close(self) -> None:
        """Close the socket and end :meth:`process_incoming_data`."""
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        tasks = [t for t in (self._reader, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._events.end()
