"""Embed the IBKR gateway connection in another program: events in, orders out, no Redis.

:class:`IbkrClient` keeps the gateway session (``/tickle``, re-authentication,
``/iserver/accounts``), opens its WebSocket, subscribes level-1 data of symbols (conids looked
up once) and live orders, and yields typed events: :class:`~common.schema.Quote` and
:class:`~common.schema.Trade` (IBKR's sampled last trade, merged from changed-fields updates by
:func:`common.l1.merge_l1`) and :class:`~common.schema.OrderUpdate` (``sor``). The gateway's
level-1 stream has no depth and no bars: this client yields no :class:`~venues.clients.BookUpdate`
and no :class:`~common.schema.Bar`. The pure session (:mod:`venues.ibkr.session`) re-sends
``smd`` before the gateway's 10-minute expiry and keeps the session alive; a dropped socket is
reopened with capped, jittered backoff and every subscription sent again; REST goes through the
pacing budget (:mod:`venues.ibkr.pacing`).

Orders go over REST through :class:`~venues.ibkr.order_adapter.IbkrOrders`, the trader's adapter:
``cOID`` is the client order id, which the gateway keeps unique, so an unclear outcome is
settled by looking it up, never by sending again. The gateway asks confirmation questions (every
market order: ``o10151``); only the message ids in ``allow_questions`` are answered "yes", any
other rejects the order (:class:`~venues.ibkr.orders.QuestionDeclined`). Orders are ``DAY``
orders. Lookups read ``/iserver/account/orders``, which the gateway serves once per 5 s: a lookup
right after another waits its turn::

    async with IbkrClient("https://localhost:5000/v1/api", "wss://localhost:5000/v1/api/ws",
                          verify_tls=False, allow_questions=("o10151",)) as client:
        await client.authenticate_websocket()
        await client.subscribe_to_ticker("AAPL")
        await client.subscribe_to_order_updates()
        order = await client.place_order("AAPL", "BUY", "1")
        async for event in client:
            print(event)

The bounded buffer and its slow-consumer policy, ``run(callback)``, ``close()`` and the default
``handle_websocket_error`` are :mod:`venues.clients`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import (
    AuthError,
    ConfigError,
    DecodeError,
)
from tickpipe.common.l1 import merge_l1
from tickpipe.common.links import decoded_object
from tickpipe.common.schema import OrderIntent
from tickpipe.common.settings import Settings
from tickpipe.common.tls import ws_ssl
from tickpipe.venues.clients import AdapterClient, Policy
from tickpipe.venues.ibkr.order_adapter import IbkrOrders
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

#: Seconds :meth:`IbkrClient.authenticate_websocket` waits for the gateway's ``sts``.
AUTHENTICATE_WAIT_S = 15.0


class IbkrClient(AdapterClient):
    """A self-healing IBKR gateway connection that yields typed events and trades."""

    venue = "ibkr"
    default_time_in_force = "DAY"
    _orders: IbkrOrders

    def __init__(
        self,
        rest_url: str,
        ws_url: str,
        *,
        verify_tls: bool = True,
        account: str = "",
        allow_questions: Iterable[str] = (),
        budget: RestBudget | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_events: int = 10_000,
        policy: Policy = "block",
        ca_file: str | None = None,
    ) -> None:
        super().__init__(max_events, policy, backoff, clock, ca_file=ca_file)
        self.ws_url = ws_url
        self.verify_tls = verify_tls
        self.rest = IbkrRest(rest_url, verify_tls=verify_tls, budget=budget, clock=clock)
        self.symbols: list[str] = []
        self.order_updates = False
        self.token = ""
        self.session: GatewaySession | None = None
        self._views: dict[str, dict[str, str]] = {}
        self._rest_tasks: set[asyncio.Task[None]] = set()
        self._authenticated = asyncio.Event()
        settings = Settings(ibkr_account=account, ibkr_allow_questions=tuple(allow_questions))
        self._orders = IbkrOrders(settings, self.rest, clock=clock, order_id_of=self._no_order_id)

    def __repr__(self) -> str:
        return f"IbkrClient({self.ws_url!r}, symbols={len(self.symbols)})"

    # -- connecting ----------------------------------------------------------------------------
    async def connect_to_websocket(self) -> None:
        """Prepare the session over REST, open the socket and start reading it."""
        ws = await self._open()
        self._read("gateway", ws, self._open, self._take)

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
        async with asyncio.timeout(AUTHENTICATE_WAIT_S):
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
        ws = self._conns.get("gateway")
        for action in actions:
            if isinstance(action, Send) and ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(action.text)
            elif isinstance(action, Tickle):
                self._background(self.rest.tickle())
            elif isinstance(action, Reauthenticate):
                self._background(self._reauthenticate())
            elif isinstance(action, Fail):
                raise action.error

    def _background(self, work: Awaitable[object]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # the next keep-alive retries; logged, counted
                self.errors += 1
                log.warning("IBKR REST call failed: %s", exc)

        task = asyncio.ensure_future(guarded())
        self._rest_tasks.add(task)
        task.add_done_callback(self._rest_tasks.discard)

    # -- reading -------------------------------------------------------------------------------
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
                await self._market(message, now)
            elif topic == "sor" and isinstance(message.get("args"), list):
                for entry in message["args"]:
                    if isinstance(entry, dict):
                        await self._events.put(order_update(entry, now), now)
        except DecodeError as exc:
            self.malformed += 1
            log.warning("skipping a malformed message: %s", exc)

    async def _market(self, message: dict[str, object], now: int) -> None:
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
                await self._events.put(event, now)

    # -- trading -------------------------------------------------------------------------------
    async def _send_order(self, intent: OrderIntent, time_in_force: str | None) -> dict[str, Any]:
        """Place a ``DAY`` order through the adapter; its fills come as order updates."""
        if str(time_in_force).upper() != "DAY":
            raise ConfigError(f"IBKR orders here are DAY orders, not {time_in_force!r}")
        return await self._retrying(self._orders.placer(intent), "place")

    # -- closing -------------------------------------------------------------------------------
    async def _close_connections(self) -> None:
        await super()._close_connections()
        tasks = list(self._rest_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self.rest.aclose()
