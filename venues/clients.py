"""Share what every venue client does besides speaking its venue: buffer, iterate, close.

A venue client (:class:`venues.binance.client.BinanceClient`,
:class:`venues.alpaca.client.AlpacaClient`, :class:`venues.ibkr.client.IbkrClient`) reads its
connections in background tasks and hands typed events to one consumer through an
:class:`EventBuffer`. The buffer is bounded
(``max_events``) and its policy for a consumer that falls behind is explicit:

* ``"block"`` (the default): the readers wait for room, so nothing is lost; the venue's socket
  then fills and the venue may end the connection as too slow (a reconnect, logged and counted);
* ``"drop"``: events that find the buffer full are dropped and counted (``dropped``), and the
  consumer receives one :class:`Dropped` event in their place, saying how many and when.

:meth:`VenueClient.place_order` is defined once for every venue: orders are named alike
(:meth:`VenueClient._order_intent`: a LIMIT order needs a price, an order without a client id
gets a fresh one), an order without a time in force takes the client's
``default_time_in_force``, and an unclear outcome is settled by looking the client id up, never
by sending again (:meth:`VenueClient._settle`); a venue supplies only the sending
(``_send_order``). The clients of REST venues (Alpaca, IBKR) trade through their venue's order
adapter, the trader's own requests (:class:`AdapterClient`).

:meth:`VenueClient.close` always completes and ends the iteration at once. An error the client
cannot recover from (a refused key, or whatever the client's ``handle_websocket_error`` decides
is fatal) is raised to the consumer after the events buffered before it.

Typed events: the schema's :class:`~common.schema.Trade`, :class:`~common.schema.Quote`,
:class:`~common.schema.Bar` and :class:`~common.schema.OrderUpdate`, plus :class:`BookUpdate` (the
top of a book the client maintains, with ``resynced`` set when it was rebuilt) and
:class:`Dropped`. Orders answer :class:`OrderState`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from tickpipe.common.backoff import Backoff
from tickpipe.common.client_events import ClientContext, read_forever, reconnect_delay
from tickpipe.common.errors import (
    AmbiguousOutcome,
    ConfigError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    VenueError,
)
from tickpipe.common.messages import Level
from tickpipe.common.schema import Event, OrderIntent
from tickpipe.common.tls import trust_ca_file

__all__ = [
    "AdapterClient",
    "BookUpdate",
    "Dropped",
    "EventBuffer",
    "OrderState",
    "Policy",
    "VenueClient",
    "close_quickly",
]

log = logging.getLogger("tickpipe.client")

Policy = Literal["block", "drop"]
T = TypeVar("T")
#: Tries of a request the venue refused for its rate limit (each after its ``Retry-After``).
RATE_LIMIT_TRIES = 3


@dataclass(frozen=True, slots=True)
class BookUpdate(Event):
    """The best levels of a book the client keeps; ``resynced``: rebuilt from a snapshot."""

    kind: ClassVar[str] = "book"
    venue: str
    symbol: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    update_id: str
    resynced: bool
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Dropped(Event):
    """``count`` events were dropped here because the consumer was behind (policy ``drop``)."""

    kind: ClassVar[str] = "dropped"
    venue: str
    count: int
    first_ts_recv: int
    last_ts_recv: int


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as the venue answered it (placed, looked up or cancelled)."""

    venue: str
    symbol: str
    client_order_id: str
    order_id: str
    side: str  # BUY / SELL
    order_type: str  # MARKET / LIMIT
    status: str  # NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED...
    qty: str
    price: str
    filled_qty: str
    cum_quote: str

    @classmethod
    def from_result(cls, venue: str, result: Mapping[str, Any]) -> OrderState:
        """Read a Binance-shaped order dict (Alpaca's adapter converts to the same shape)."""
        return cls(
            venue=venue,
            symbol=str(result.get("symbol", "")),
            # a cancel's answer names the order as origClientOrderId (clientOrderId: the cancel)
            client_order_id=str(result.get("origClientOrderId") or result.get("clientOrderId", "")),
            order_id=str(result.get("orderId", "")),
            side=str(result.get("side", "")).upper(),
            order_type=str(result.get("type", "")).upper(),
            status=str(result.get("status", "")),
            qty=str(result.get("origQty", "")),
            price=str(result.get("price", "0")),
            filled_qty=str(result.get("executedQty", "0")),
            cum_quote=str(result.get("cummulativeQuoteQty", "0")),
        )


class EventBuffer:
    """A bounded buffer from the client's readers to one consumer, with an explicit policy."""

    def __init__(self, venue: str, max_events: int = 10_000, policy: Policy = "block") -> None:
        if max_events < 1:
            raise ConfigError(f"max_events must be at least 1, got {max_events}")
        if policy not in ("block", "drop"):
            raise ConfigError(f"policy must be 'block' or 'drop', got {policy!r}")
        self.venue = venue
        self.max_events = max_events
        self.policy: Policy = policy
        self.dropped = 0  # events dropped, in total
        self._items: deque[Event] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._ended = False
        self._error: BaseException | None = None
        self._gap: tuple[int, int, int] | None = None  # count, first and last ts_recv not sent

    def qsize(self) -> int:
        """Return how many events wait for the consumer."""
        return len(self._items)

    def full(self) -> bool:
        """Tell whether the next event would wait (``block``) or be dropped (``drop``)."""
        return len(self._items) >= self.max_events

    async def put(self, event: Event, ts_recv: int) -> None:
        """Hand ``event`` to the consumer: wait for room, or drop it, as the policy says."""
        while self.full() and not self._ended:
            if self.policy == "drop":
                self._drop(ts_recv)
                return
            self._writable.clear()
            await self._writable.wait()
        if self._ended:
            return
        self._flush_gap()
        self._items.append(event)
        self._readable.set()

    def _flush_gap(self) -> None:
        """Queue the :class:`Dropped` marker of the events dropped since the last one queued."""
        if self._gap is not None:
            count, first, last = self._gap
            self._gap = None
            self._items.append(Dropped(self.venue, count, first, last))
            self._readable.set()

    def _drop(self, ts_recv: int) -> None:
        self.dropped += 1
        if self._gap is None:
            log.warning(
                "the consumer is behind: dropping events (policy 'drop')",
                extra={"venue": self.venue, "max_events": self.max_events},
            )
            self._gap = (1, ts_recv, ts_recv)
        else:
            count, first, _ = self._gap
            self._gap = (count + 1, first, ts_recv)

    async def get(self) -> Event | None:
        """Return the next event; ``None`` once ended; raise the fatal error after the backlog."""
        while not self._items:
            if self._ended:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return None
            self._readable.clear()
            await self._readable.wait()
        event = self._items.popleft()
        if len(self._items) < self.max_events:
            self._flush_gap()  # the marker follows every event that came before the drops
            self._writable.set()
        return event

    def fail(self, error: BaseException) -> None:
        """End with ``error``: the consumer gets what is buffered, then the error."""
        if not self._ended:
            self._flush_gap()
            self._error = error
            self._end()

    def close(self) -> int:
        """End now: the consumer's iteration stops; return how many buffered events it skips."""
        skipped = len(self._items)
        self._items.clear()
        self._error = None
        self._end()
        return skipped

    def _end(self) -> None:
        self._ended = True
        self._readable.set()
        self._writable.set()


Callback = Callable[[Event], Awaitable[None] | None]

#: Seconds a closing handshake may take before the connection is cut (a venue that is still
#: sending a backlog answers a close frame late).
CLOSE_WAIT_S = 2.0


async def close_quickly(ws: ClientConnection) -> None:
    """Close a WebSocket politely, but cut it if the handshake takes more than a moment."""
    try:
        await asyncio.wait_for(ws.close(), CLOSE_WAIT_S)
    except (TimeoutError, WebSocketException, OSError):
        ws.transport.abort()


class VenueClient(ClientContext):
    """The venue-neutral half of a client: buffer, iteration, callbacks, tasks and close."""

    venue: ClassVar[str] = ""
    #: The time in force of an order placed without one (``None``: the venue adapter's choice).
    default_time_in_force: ClassVar[str | None] = None
    #: Errors of a cancel that mean the order is no longer open (``cancel_all`` skips it).
    cancel_closed: ClassVar[tuple[type[Exception], ...]] = (OrderNotFound,)

    def __init__(
        self,
        max_events: int = 10_000,
        policy: Policy = "block",
        backoff: Backoff | None = None,
        clock: Callable[[], int] = time.time_ns,
        book_depth: int = 10,
        ca_file: str | None = None,
    ) -> None:
        if ca_file is not None:  # e.g. the mock's ca.pem: trusted on top of the system store
            trust_ca_file(ca_file)
        self._events = EventBuffer(self.venue, max_events, policy)
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.book_depth = book_depth  # levels of each local book a BookUpdate carries
        self._tasks: list[asyncio.Task[None]] = []
        #: The open connections by role (``None`` while one is being reopened).
        self._conns: dict[str, ClientConnection | None] = {}
        self._closed = False
        self.errors = 0  # connection errors seen (each one logged)
        self.reconnects = 0  # connections reopened after an error
        self.rate_limit_waits = 0  # requests held for the venue's rate limit
        self.malformed = 0  # frames or messages skipped because they did not parse (each logged)

    @property
    def dropped(self) -> int:
        """Events dropped because the consumer was behind (policy ``drop`` only)."""
        return self._events.dropped

    def __aiter__(self) -> AsyncIterator[Event]:
        return self.process_incoming_data()

    async def process_incoming_data(self, callback: Callback | None = None) -> AsyncIterator[Event]:
        """Yield typed events until :meth:`close` (each also passed to ``callback`` first).

        A fatal error is raised here after the events buffered before it.
        """
        while True:
            event = await self._events.get()
            if event is None:
                return
            if callback is not None:
                result = callback(event)
                if result is not None:
                    await result
            yield event

    async def run(self, callback: Callback) -> None:
        """Pass every event to ``callback`` until :meth:`close` (the callback style)."""
        async for _ in self.process_incoming_data(callback):
            pass

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        raise NotImplementedError

    async def place_order(
        self,
        symbol: str,
        side: str,
        qty: str,
        *,
        order_type: str = "MARKET",
        price: str | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
    ) -> OrderState:
        """Place a MARKET or LIMIT order; return it as the venue answered.

        ``time_in_force`` (default: the client's :attr:`default_time_in_force`): ``GTC``,
        ``IOC``, ``FOK`` on Binance (default ``GTC``); ``day``, ``gtc``, ``ioc``, ``fok``... on
        Alpaca (default ``gtc`` for crypto, ``day`` for stocks); ``DAY`` only on IBKR (any other
        raises :class:`ConfigError`, nothing sent). ``client_order_id`` (default: a fresh one;
        Binance's ``newClientOrderId``, IBKR's ``cOID``) names the order and is its idempotency
        key: an unclear outcome (timeout, dropped connection) or an id the venue already has is
        settled by looking the id up (:meth:`_settle`), never by sending again. Raises
        :class:`ConfigError` for a LIMIT order without a price, :class:`OrderRejected` when the
        venue refuses the order, and the unclear error when the lookup finds no such order.
        """
        intent = self._order_intent(
            symbol, client_order_id, side=side, qty=qty, order_type=order_type, price=price
        )
        try:
            answer = await self._send_order(intent, time_in_force or self.default_time_in_force)
        except (AmbiguousOutcome, DuplicateOrder) as unclear:
            return await self._settle(unclear, intent)
        return OrderState.from_result(self.venue, answer)

    async def _send_order(self, intent: OrderIntent, time_in_force: str | None) -> dict[str, Any]:
        """Send the order ``intent`` names (a refusal for the rate limit tried again, see
        :meth:`_retrying`); return the venue's answer, Binance-shaped. Each venue fills this."""
        raise NotImplementedError

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        raise NotImplementedError

    async def order_status(self, symbol: str, client_order_id: str) -> OrderState:
        raise NotImplementedError

    def _order_intent(
        self,
        symbol: str,
        client_order_id: str | None,
        *,
        side: str = "",
        qty: str = "0",
        order_type: str = "MARKET",
        price: str | None = None,
    ) -> OrderIntent:
        """Name an order the way the trader does: a LIMIT order needs a price (ConfigError),
        and an order without a client id gets a fresh one (its idempotency key)."""
        order_type = order_type.upper()
        if order_type == "LIMIT" and not price:
            raise ConfigError("a LIMIT order needs a price")
        client_id = client_order_id or f"tp-{uuid.uuid4().hex[:24]}"
        now = self.clock()
        return OrderIntent(
            client_order_id=client_id,
            signal_id=client_id,
            venue=self.venue,
            symbol=symbol,
            side=side.lower(),
            order_type=order_type,
            qty=qty,
            price=price,
            ts_signal=now,
            ts_intent=now,
        )

    async def _settle(self, unclear: VenueError, intent: OrderIntent) -> OrderState:
        """Settle an unclear place by looking its client id up, never by sending it again;
        re-raise ``unclear`` when the venue has no such order."""
        client_id = {"client_order_id": intent.client_order_id}
        log.warning("order outcome unclear: looking it up", extra=client_id)
        try:
            return await self.order_status(intent.symbol, intent.client_order_id)
        except OrderNotFound:
            raise unclear from None

    async def cancel_all(self, symbol: str | None = None) -> list[OrderState]:
        """Cancel every open order (of ``symbol``); return the cancelled orders.

        An order that filled or was cancelled meanwhile is skipped (logged), not an error.
        """
        cancelled: list[OrderState] = []
        for order in await self.open_orders(symbol):
            try:
                cancelled.append(await self.cancel_order(order.symbol, order.client_order_id))
            except self.cancel_closed as exc:
                log.info(
                    "order closed before its cancel",
                    extra={"client_order_id": order.client_order_id, "error": str(exc)},
                )
        return cancelled

    async def _retrying(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """Run a request; one the venue refused for its rate limit (nothing was done) is sent
        again after the venue's ``Retry-After``, at most :data:`RATE_LIMIT_TRIES` times."""
        for attempt in range(1, RATE_LIMIT_TRIES + 1):
            try:
                return await call()
            except RateLimited as exc:
                if attempt == RATE_LIMIT_TRIES:
                    raise
                self.rate_limit_waits += 1
                log.warning(
                    "request refused for the rate limit; waiting",
                    extra={"venue": self.venue, "request": what, "wait_s": exc.retry_after_s},
                )
                await asyncio.sleep(exc.retry_after_s)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(
        self,
        role: str,
        ws: ClientConnection,
        reopen: Callable[[], Awaitable[ClientConnection]],
        take: Callable[[str | bytes], Awaitable[None]],
        lost: Callable[[], None] = lambda: None,
    ) -> None:
        """Read ``ws`` in the background; reopen it (``reopen``) after each error that is not
        fatal, calling ``lost`` first (state to rebuild); ``take`` digests each frame."""
        self._conns[role] = ws
        self._spawn(self._read_forever(role, reopen, take, lost), f"{self.venue}-{role}")

    async def _read_forever(
        self,
        role: str,
        reopen: Callable[[], Awaitable[ClientConnection]],
        take: Callable[[str | bytes], Awaitable[None]],
        lost: Callable[[], None],
    ) -> None:
        async def reopened() -> ClientConnection:
            ws = self._conns[role] = await reopen()
            self.reconnects += 1
            log.info("venue connection reopened", extra={"connection": role})
            return ws

        def dropped() -> None:
            self._conns[role] = None
            lost()

        await read_forever(
            lambda: self._conns.get(role),
            reopened,
            take,
            closed=lambda: self._closed,
            verdict=self.handle_websocket_error,
            backoff=self.backoff,
            dropped=dropped,
            fail=self._fail,
        )

    def handle_websocket_error(self, error: BaseException) -> float:
        """Decide what an error means: return the delay before reconnecting, or raise if fatal.

        A rejected key (:class:`AuthError`) is raised as is; a rate limit or a 418/429 handshake
        waits at least the venue's ``Retry-After``; network and venue errors back off (capped,
        jittered); anything else is raised. Override it for another policy.
        """
        self.errors += 1
        return reconnect_delay(error, self.backoff, self.venue)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # a reader's own bug: never a silent end for the consumer
            log.error("client task failed", extra={"task": task.get_name(), "error": repr(error)})
            self._events.fail(error)

    def _fail(self, error: BaseException) -> None:
        """End the consumer's iteration with ``error`` (after what is buffered)."""
        log.error("client stops on a fatal error", extra={"venue": self.venue, "error": str(error)})
        self._events.fail(error)

    async def _close_connections(self) -> None:
        """Close the venue's connections (a client with more to close extends this)."""
        for ws in self._conns.values():
            if ws is not None:
                await close_quickly(ws)

    async def close(self) -> None:
        """Close every connection and end the iteration; always completes."""
        self._closed = True
        skipped = self._events.close()
        if skipped:
            log.info("closing with events unread", extra={"venue": self.venue, "unread": skipped})
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        try:
            await self._close_connections()
        except Exception as exc:  # closing goes on: nothing is left to deliver
            log.warning("closing a connection failed", extra={"error": repr(exc)})
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            if pending:
                log.warning("client tasks still ending after close", extra={"tasks": len(pending)})


Answer = Callable[[], Awaitable[dict[str, Any]]]
#: Order statuses (the Binance-shaped ones the adapters answer) a cancel still has to end.
STILL_OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})


class Orders(Protocol):
    """The part of a venue's order adapter (the trader's, over REST) a client trades with."""

    async def lookup(self, intent: OrderIntent) -> dict[str, Any]: ...

    async def canceller(self, intent: OrderIntent) -> Answer: ...

    async def list_open(self) -> list[dict[str, Any]] | None: ...


class AdapterClient(VenueClient):
    """A client whose orders go through its venue's order adapter (Alpaca, IBKR): the same
    requests the trader sends, answered as :class:`OrderState`."""

    # A REST venue refuses the cancel of an order no longer open (Alpaca: 422; the IBKR gateway:
    # not working any more) and answers 404 for one it does not know.
    cancel_closed = (OrderNotFound, OrderRejected)
    _orders: Orders

    @staticmethod
    async def _no_order_id(client_order_id: str) -> str:
        """The adapter's ``order_id_of``: a client records no venue ids, so the adapter learns
        the venue's id of an order by its client id when it needs one."""
        return ""

    async def order_status(self, symbol: str, client_order_id: str) -> OrderState:
        """Look an order up by its client id; raise :class:`OrderNotFound` if the venue has none."""
        intent = self._order_intent(symbol, client_order_id)
        result = await self._retrying(lambda: self._orders.lookup(intent), "status")
        return OrderState.from_result(self.venue, result)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel an open order by its client id; return it as the venue shows it afterwards.

        A cancel is a request and then a lookup of its outcome: when the venue refuses a step
        for its rate limit, the next try looks the order up first and cancels only an order
        still open, never sending a cancel that may have gone through again. Raises
        :class:`OrderNotFound` for an id the venue does not know, and
        :class:`~common.errors.OrderRejected` for an order that is no longer open.
        """
        intent = self._order_intent(symbol, client_order_id)
        cancel = await self._orders.canceller(intent)
        tried = False

        async def once() -> dict[str, Any]:
            nonlocal tried
            if tried:  # an earlier try met the rate limit, perhaps after its cancel was done
                found = await self._orders.lookup(intent)
                if found.get("status") not in STILL_OPEN:
                    log.info(
                        "cancel settled by its lookup",
                        extra={"client_order_id": intent.client_order_id},
                    )
                    return found
            tried = True
            return await cancel()

        return OrderState.from_result(self.venue, await self._retrying(once, "cancel"))

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        """List the open orders (of ``symbol``, or every symbol)."""
        listed = await self._retrying(self._orders.list_open, "open orders") or []
        orders = [OrderState.from_result(self.venue, o) for o in listed]
        return [o for o in orders if symbol is None or o.symbol == symbol.upper()]
