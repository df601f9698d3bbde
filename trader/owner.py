"""Trade while this trader owns the account: signals in, at most one order per signal out.

A :class:`Trader` lives for one *term*: from taking the account's lease to losing it (or to
stop). It reads everything it needs from Redis when the term starts (positions, working orders,
the kill switch, the market), claims the entries the previous owner left pending
(``XAUTOCLAIM``), and from then on every write it makes is fenced by the lease
(:mod:`trader.fence`), every read of new entries waits until the lease is fresh, and no order
leaves unless the lease is fresh. Signals wait until a reconciliation has run since the term
began or Redis was last unavailable: an order whose intent Redis lost is adopted before its
signal, read again, could send it a second time.

Every decision is the pure core's (:class:`trader.core.TraderCore`); this module feeds it
signals and what Redis answered, and executes the actions it returns (:mod:`trader.actions`).
Per ``place`` signal: the risk limits are checked from memory (kill switch, symbols, order size,
position, the market price and the signal's distance from it, notional valued at the market,
order rate), the intent is recorded (one fenced Lua script: ``SET NX`` on its idempotency key, an
``intent`` entry in ``{V}:orders``, the working-orders membership) *before* anything is sent,
and the order goes out through the one router (:mod:`trader.venue_router`) and the venue's order
adapter (:mod:`venues.binance.order_adapter` over the WebSocket API,
:mod:`venues.alpaca.order_adapter` over REST). If the intent already exists (an earlier run
may have sent it) the order is never sent again: it is looked up unless its outcome is already
recorded; if the existing intent says
something else than the signal (side, quantity, price, symbol), the signal is a dead letter
(``{V}:trader-dead-letters``), an error line and an alarm in the health record. A ``cancel``
signal cancels the symbol's working orders. The signal is acknowledged only once its outcome is
in ``{V}:orders``.

Orders are pipelined: once a signal's intent is recorded and its order written to the venue, the
next signal is handled without waiting for the venue's answer. At most
``TICKPIPE_MAX_ORDERS_IN_FLIGHT`` (default 32) orders await theirs; each is followed, recorded and
acknowledged on its own. An order in flight counts in the risk limits from the moment its intent
is recorded. A ``cancel`` signal first waits for the answers of its symbol's orders in flight, so
it cancels them too. On stop, no new order leaves and the ones in flight are followed to the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.contract import OrderEvent
from tickpipe.common.errors import DecodeError, RedisUnavailable
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.names import GROUP_TRADER, Partition
from tickpipe.common.redis_io import ensure_group, redis_errors
from tickpipe.common.schema import OrderIntent, Signal
from tickpipe.common.settings import Settings, order_quantities
from tickpipe.trader import actions as act
from tickpipe.trader.consumer import GroupConsumer
from tickpipe.trader.control import kill_switch_on
from tickpipe.trader.core import Replaced, TraderCore
from tickpipe.trader.instruments import Instruments
from tickpipe.trader.intent_rules import replaced_client_order_id
from tickpipe.trader.lease import Lease, new_token
from tickpipe.trader.ledger import Ledger
from tickpipe.trader.market import MarketView
from tickpipe.trader.market_feed import MarketFeed
from tickpipe.trader.risk import RiskLimits
from tickpipe.trader.venue_router import Request, VenueRouter
from tickpipe.venues.registry import OrderOptions
from tickpipe.venues.registry import venue as venue_of

__all__ = ["COUNTERS", "MAX_INFLIGHT", "Trader", "default_limits"]

log = logging.getLogger("tickpipe.trader")

COUNTERS = tuple(
    "signals_seen bad_signals orders_sent acks rejects ambiguous unresolved updates "
    "foreign_updates rate_limited cancel_signals cancels_sent cancels reconciles "
    "discrepancies adopted intent_mismatches market_refusals claimed redis_outages "
    "leases_lost intents_restored order_type_refusals replaces replace_refusals".split()
)

#: Orders that may await the venue's answer at once (the next signal waits for a free slot);
#: ``TICKPIPE_MAX_ORDERS_IN_FLIGHT`` sets it for the stage.
MAX_INFLIGHT = 32
#: How long a cancel signal waits for a request under way about an order it cancels.
CANCEL_WAIT_S = 30.0
#: How long a replacing signal waits for the venue to show the replaced order's end.
REPLACE_WAIT_S = 10.0


def default_limits(settings: Settings) -> RiskLimits:
    """Build the limits from settings: position, notional, ten times the largest order size,
    symbols."""
    sizes = order_quantities(settings.order_qty).values()
    return RiskLimits(
        max_order_qty=max(Decimal(q) for q in sizes) * 10,
        max_position=Decimal(settings.max_position),
        max_notional=Decimal(settings.max_notional),
        symbols=frozenset(settings.symbols),
    )


class Trader:
    """Route signals to the venue and follow the orders for one term of ownership."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        venue: Any,  # the order connection the venue description opened (or a test fake)
        *,
        clock: Callable[[], int],
        limits: RiskLimits,
        lease: Lease | None = None,
        market: MarketView | None = None,
        counts: dict[str, int] | None = None,
        alarms: list[str] | None = None,
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
        idle_s: float = 0.2,
        signer: Callable[[str], str] | None = None,  # signs a request payload (Binance)
        session: bool = False,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.venue_name = settings.venue
        self.redis = redis
        self.venue = venue
        self.clock = clock
        self.limits = limits
        self.idle_s = idle_s
        self.partitions: list[Partition] = list(settings.partitions())
        self.lease = lease or Lease(
            redis,
            self.keys,
            self.venue_name,
            self.partitions,
            token=new_token(settings.instance),
            lease_ms=settings.trader_lease_ms,
        )
        self.market = market if market is not None else MarketView()
        self.feed = MarketFeed(redis, settings, self.market)
        self.counts = counts if counts is not None else dict.fromkeys(COUNTERS, 0)
        for name in COUNTERS:
            self.counts.setdefault(name, 0)
        self.alarms = alarms if alarms is not None else []
        self.core = TraderCore(
            limits,
            settings,
            market=self.market,
            counts=self.counts,
            alarms=self.alarms,
            status_attempts=status_attempts,
            recv_window_ms=recv_window_ms,
        )
        self.ledger = Ledger(
            redis,
            self.keys,
            self.venue_name,
            clock=clock,
            counts=self.counts,
            lease=self.lease,
            tracker=self.core.tracker,
        )
        orders = venue_of(settings.venue).order_adapter(
            settings,
            venue,
            OrderOptions(
                clock=clock,
                recv_window_ms=recv_window_ms,
                order_id_of=self._order_id_of,
                signer=signer,
                session=session,
                dead_letter=self.ledger.dead_letter,
            ),
        )
        self.router = VenueRouter(
            settings,
            self.ledger,
            orders=orders,
            clock=clock,
            retry_base_s=retry_base_s,
            confirm_lease=self._confirm_lease,
            core=self.core,
        )
        self.instruments = Instruments(
            orders, list(settings.symbols), counts=self.counts, clock=clock,
            on_change=self._announce_filters,
        )  # fmt: skip
        self.core.shaper = self._shape
        self.slots = asyncio.Semaphore(max_inflight)
        # (signal stream, entry id) -> (symbol, task): ids repeat across the partitions' streams
        self.sends: dict[tuple[str, str], tuple[str, asyncio.Task[None]]] = {}
        self.send_failure: BaseException | None = None
        self.reread_signals = False
        self.reread_updates = False
        self.stopping = asyncio.Event()  # consume_signals' stop
        #: Asked to reconcile (the background tasks set it).
        self.request_reconcile: Callable[[str], None] = lambda reason: None
        #: Set once a reconciliation has run since the term started or Redis was last found
        #: unavailable: signals wait for it (an intent Redis lost must be adopted first, or a
        #: signal read again would send its order twice). ``outages`` counts the clears.
        self.reconciled = asyncio.Event()
        self.outages = 0
        self.consumer = GroupConsumer(
            redis,
            settings,
            self.lease,
            self.counts,
            idle_s=idle_s,
            failure=lambda: self.send_failure,
            on_outage=self.redis_outage,
        )

    def redis_outage(self, reason: str = "redis-reconnect") -> None:
        """Redis was unavailable: hold the signals until a reconciliation has run after it."""
        self.outages += 1
        self.reconciled.clear()
        self.request_reconcile(reason)

    async def _order_id_of(self, client_order_id: str) -> str:
        """The venue's order id recorded for ``client_order_id`` ("" when none is known yet)."""
        state = await self.ledger.order_state(client_order_id)
        return state.order_id if state is not None else ""

    async def _confirm_lease(self) -> None:
        async with redis_errors():
            await self.lease.confirm()

    @property
    def last_order_latency_ms(self) -> float | None:
        return self.core.last_order_latency_ms

    @property
    def kill_switch(self) -> bool:
        return self.core.kill_switch

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "last_order_latency_ms": self.last_order_latency_ms,
            "positions": self.ledger.positions(),
            "pnl": self.ledger.tracker.book.summary(),
            "working_orders": len(self.ledger.tracker.working()),
            "orders_in_flight": len(self.sends),
            "kill_switch": self.core.kill_switch,
            "alarms": list(self.alarms),
        }

    # -- set-up ---------------------------------------------------------------------------------
    def signal_streams(self) -> list[str]:
        return [self.keys.signals(p) for p in self.partitions]

    def update_streams(self) -> list[str]:
        return [self.keys.order_updates(self.venue_name)]

    async def prepare(self) -> None:
        """Start a term: groups, positions, working orders, kill switch, market, claims."""
        for stream in [*self.signal_streams(), *self.update_streams()]:
            await ensure_group(self.redis, stream, GROUP_TRADER)
        await self.ledger.load()
        await self.ledger.intents.load_script()
        await self.refresh_kill_switch()
        await self.feed.load()
        claimed = await self.claim(min_idle_ms=0)
        log.info("account taken", extra={"lease": self.lease.token, "claimed": claimed})

    async def claim(self, *, min_idle_ms: int) -> int:
        """Move the group's entries pending at other consumers (or idle) to this one.

        At the start of a term every pending entry is claimed (the previous owner's); later,
        entries idle for longer than a lease period (read by a trader that lost its lease as it
        read them) are. Claimed entries are read again as this consumer's pending ones.
        """
        streams = [*self.signal_streams(), *self.update_streams()]
        total = await self.consumer.claim(streams, min_idle_ms=min_idle_ms)
        if total:
            self.counts["claimed"] += total
            self.reread_signals = True
            self.reread_updates = True
        return total

    async def ack(self, stream: str, entry_id: str) -> None:
        """Acknowledge an entry of ``stream``, fenced by the lease of its hash slot."""
        await self.consumer.ack(stream, entry_id)

    async def consume_updates(self, stop: asyncio.Event) -> None:
        """Record the order updates until ``stop`` is set."""
        await self.consumer.consume(
            self.update_streams(),
            self.record_update,
            stop,
            count=self.settings.batch_size,
            reread=self._reread_updates,
        )

    def _reread_updates(self) -> bool:
        wanted, self.reread_updates = self.reread_updates, False
        return wanted

    # -- signals --------------------------------------------------------------------------------
    async def consume_signals(self, stop: asyncio.Event) -> None:
        """Pipeline the signals until ``stop`` is set, then wait for the orders in flight."""
        self.stopping = stop
        try:
            await self.consumer.consume(
                self.signal_streams(),
                self.dispatch_signal,
                stop,
                count=16,
                reread=self._reread,
                ready=self.reconciled.is_set,
            )
        finally:
            try:
                await self.settle_sends()
            except asyncio.CancelledError:  # the term is being torn down: do not leave them
                tasks = [t for _, t in self.sends.values()]
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks)
                raise

    async def dispatch_signal(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Handle one signal up to its order leaving; follow the answer in a task of its own."""
        if (stream, entry_id) in self.sends:  # read again while its order is in flight
            return
        signal = await self._decode(stream, entry_id, fields)
        if signal is None:
            return
        if signal.action == "cancel":
            await self.settle_sends(signal.symbol)  # so their orders are cancelled too
            await self.cancel_symbol(signal)
            await self.ack(stream, entry_id)
            return
        if signal.replaces:  # the order it replaces may still be on its way: know its answer
            await self.settle_sends(signal.symbol)
        await self.slots.acquire()
        if self.stopping.is_set():  # stopped while waiting for a slot: left for the next run
            self.slots.release()
            return
        try:
            follow = await self.start_place(signal, entry=(stream, entry_id))
        except BaseException:
            self.slots.release()
            raise
        task = asyncio.create_task(self._follow(stream, entry_id, follow))
        self.sends[(stream, entry_id)] = (signal.symbol, task)

    async def _follow(
        self, stream: str, entry_id: str, follow: Coroutine[Any, Any, None] | None
    ) -> None:
        try:
            async with redis_errors():
                if follow is not None:
                    await follow
                await self.ack(stream, entry_id)
        except RedisUnavailable as exc:  # the signal stays pending; the consumer reads it again
            log.warning("Redis unavailable after an order left", extra={"error": str(exc)})
            self.reread_signals = True
        except Exception as exc:  # the consumer raises it: the term ends (LeaseLost) or the stage
            self.send_failure = exc
        finally:
            self.sends.pop((stream, entry_id), None)
            self.slots.release()

    def _reread(self) -> bool:
        """Tell (once) that a pipelined order met Redis trouble: its signal is still pending."""
        wanted, self.reread_signals = self.reread_signals, False
        return wanted

    async def settle_sends(self, symbol: str | None = None) -> None:
        """Wait for the answers of the orders in flight (of ``symbol``, or all)."""
        tasks = [t for s, t in self.sends.values() if symbol is None or s == symbol]
        if tasks:
            await asyncio.wait(tasks)

    async def _decode(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes]
    ) -> Signal | None:
        self.counts["signals_seen"] += 1
        try:
            return Signal.from_fields(fields)
        except DecodeError as exc:
            self.counts["bad_signals"] += 1
            log.warning("bad signal skipped", extra={"entry_id": entry_id, "error": str(exc)})
            await self.ack(stream, entry_id)
            return None

    async def cancel_symbol(self, signal: Signal) -> None:
        """Cancel every working order of the signal's symbol."""
        await self.execute(self.core.on_signal(signal, self.clock()))

    async def execute(self, actions: list[act.Action]) -> None:
        """Execute the core's bookkeeping and cancel actions in order."""
        for action in actions:
            if isinstance(action, act.RecordEvent):
                if action.event == "kill_switch":
                    log.warning("kill switch %s", "on" if action.fields["on"] == "1" else "off")
                await self.ledger.record_event(action.event, action.fields)
            elif isinstance(action, act.Cancel):
                await self.router.cancel(
                    action.client_order_id,
                    reason=action.reason,
                    wait_s=CANCEL_WAIT_S if action.wait else 0.0,
                )
            elif isinstance(action, act.Alarm):
                log.error(
                    "%s: the signal's client order id has another decision's intent; "
                    "nothing sent for this signal",
                    action.text,
                )
            elif isinstance(action, act.DeadLetter):
                await self.ledger.dead_letter(action.fields)
            elif isinstance(action, act.Resolve):
                await self.router.resolve(action.intent, source=action.source)
            else:
                raise TypeError(f"not an action to execute here: {action!r}")

    async def _replaced(self, signal: Signal, *, cancel_tried: bool = False) -> Replaced:
        """Read what the ledger holds of the order ``signal`` replaces."""
        cid = replaced_client_order_id(signal.replaces)
        intent = await self.ledger.stored_intent(cid)
        state = await self.ledger.order_state(cid) if intent is not None else None
        return Replaced(intent, state, cancel_tried)

    async def _cancel_first(self, cancel: act.CancelFirst, replaced: Replaced) -> None:
        """Cancel the order a signal replaces; wait (bounded) until the venue shows its end.

        The cancel's answer usually settles it; otherwise the order is looked up, a few times
        with a pause, until it is terminal or :data:`REPLACE_WAIT_S` has passed (the core then
        refuses the replacement: the old order may still be live).
        """
        cid = cancel.client_order_id
        await self.router.cancel(cid, reason=cancel.reason, wait_s=CANCEL_WAIT_S)
        deadline_ns = self.clock() + int(REPLACE_WAIT_S * 1e9)
        pause_s = 0.05
        while True:
            state = await self.ledger.order_state(cid)
            if (state is not None and state.terminal) or self.clock() >= deadline_ns:
                return
            await asyncio.sleep(pause_s)  # the venue has the cancel; give it a moment
            pause_s = min(1.0, pause_s * 2)
            if replaced.intent is not None and cid not in self.router.inflight:
                # source "cancel": a lookup that finds no order never places it again
                await self.router.resolve(replaced.intent, source="cancel")

    async def place(self, signal: Signal) -> None:
        """Send one order for ``signal`` unless its intent exists or a limit refuses it."""
        follow = await self.start_place(signal)
        if follow is not None:
            await follow

    async def start_place(
        self, signal: Signal, *, entry: tuple[str, str] | None = None
    ) -> Coroutine[Any, Any, None] | None:
        """Execute the core's decision on ``signal`` up to its order leaving; return the rest.

        The risk checks read memory only (the kill switch and the market are refreshed in the
        background), so the one Redis round trip before the order leaves is the script recording
        the intent. ``None`` means nothing is left to wait for (refused, or recorded as such).
        ``entry`` (signal stream, entry id) names the signal in a dead letter.
        """
        await self.instruments.ensure()  # the venue's filters, loaded once a term (then refreshed)
        loaded = False
        replaced = await self._replaced(signal) if signal.replaces else None
        while True:
            actions = self.core.on_signal(signal, self.clock(), market_loaded=loaded, entry=entry,
                                          replaced=replaced)  # fmt: skip
            first = actions[0]
            if isinstance(first, act.CancelFirst) and replaced is not None:
                await self._cancel_first(first, replaced)
                replaced = await self._replaced(signal, cancel_tried=True)
                continue
            if not isinstance(first, act.LoadMarket):
                break
            await self.feed.load(first.symbol)  # the view may lag the signal's own trade
            loaded = True
        if isinstance(first, act.Await):
            return self._after_inflight(signal, first.client_order_id, entry)
        if isinstance(first, act.Reject):
            intent = first.intent
            stored = await self.ledger.stored_intent(intent.client_order_id)
            if stored is not None:  # recorded (and maybe sent) by an earlier run
                return await self._existing(signal, intent, stored, entry)
            extra = {"reason": first.reason, "stage": first.stage}
            await self.ledger.record(intent, OrderEvent.REJECTED, extra)
            if first.stage in ("order", "replace"):
                log.warning("order refused before sending: %s", first.reason,
                            extra={"client_order_id": intent.client_order_id,
                                   "signal_id": signal.signal_id})  # fmt: skip
            await self.execute(actions[1:])
            return None
        assert isinstance(first, act.RecordIntent)
        intent = first.intent
        cid = intent.client_order_id
        requests: list[Request] = []  # signed while Redis records the intent
        sending = False
        try:
            stored = await self.ledger.record_intent(
                intent, meanwhile=lambda: requests.append(self.router.prepare(intent))
            )
            decided = self.core.on_recorded(intent, stored)
            if decided and isinstance(decided[0], act.Send):
                sending = True  # the send keeps it in flight until the venue answers
                return self.router.send(signal, intent, request=requests[0] if requests else None)
        finally:
            if not sending:
                self.router.inflight.discard(cid)
        assert stored is not None
        return await self._existing(signal, intent, stored, entry)  # after the discard

    async def _after_inflight(
        self, signal: Signal, cid: str, entry: tuple[str, str] | None
    ) -> None:
        """Handle ``signal`` once the request under way for its order has ended.

        The same decision read again (derived again after Redis lost its entry, say) while its
        order is being sent or looked up: Redis may have lost the intent too, so recording one
        now would send the order a second time. The request's outcome puts the intent back.
        """
        log.info("the same decision is under way here: waiting for it",
                 extra={"client_order_id": cid, "signal_id": signal.signal_id})  # fmt: skip
        await self.router.inflight.wait_free(cid, CANCEL_WAIT_S)
        follow = await self.start_place(signal, entry=entry)
        if follow is not None:
            await follow

    async def _existing(
        self,
        signal: Signal,
        intent: OrderIntent,
        stored: OrderIntent,
        entry: tuple[str, str] | None,
    ) -> Coroutine[Any, Any, None] | None:
        """Let the core decide about an intent an earlier run recorded; return its lookup."""
        known = await self.ledger.outcome_known(stored.client_order_id)
        actions = self.core.on_stored(signal, intent, stored, outcome_known=known, entry=entry)
        resolve = [a for a in actions if isinstance(a, act.Resolve)]
        await self.execute([a for a in actions if not isinstance(a, act.Resolve)])
        if not resolve:
            if not actions:
                log.info(
                    "intent exists with its outcome recorded: nothing to send or look up",
                    extra={"client_order_id": intent.client_order_id},
                )
            return None
        log.info(
            "intent exists: resolving, never resending",
            extra={"client_order_id": intent.client_order_id},
        )
        lookup = resolve[0]

        async def follow() -> None:  # the core put it in flight; the lookup takes it off
            await self.router.resolve(lookup.intent, source=lookup.source)

        return follow()

    def _shape(
        self, intent: OrderIntent, market_price: Decimal | None
    ) -> tuple[OrderIntent, str | None]:
        """Fit ``intent`` to the venue (the core's shaper): its order types, then its filters.

        Returns the intent to send (rounded where the filters allow) and ``None``, or the
        intent and why nothing may be sent (:mod:`trader.instruments`).
        """
        orders = self.router.orders
        venue_refusal = getattr(orders, "order_refusal", None)
        problem = venue_refusal(intent) if venue_refusal is not None else None
        if problem is not None:
            self.counts["order_type_refusals"] += 1
            return intent, f"order type refused: {problem}"
        venue_type = getattr(orders, "venue_order_type", None)
        shaped, refused = self.instruments.shape(
            intent,
            venue_type(intent) if venue_type is not None else intent.order_type,
            market_price,
        )
        return shaped, (str(refused) if refused is not None else None)

    async def _announce_filters(self, filters: InstrumentFilters) -> None:
        """Write a symbol's filters to ``{V}:orders`` for the strategies that follow them."""
        await self.ledger.record_event(OrderEvent.INSTRUMENTS, filters.to_fields())

    async def refresh_kill_switch(self) -> bool:
        """Read the kill switch into memory; record and log a change; return whether it is on."""
        on = await kill_switch_on(self.redis, self.settings)
        await self.execute(self.core.on_kill_switch(on))
        return on

    async def cancel_breaches(self) -> None:
        """Cancel the working orders the kill switch or a position limit no longer allows."""
        await self.execute(self.core.on_tick(self.clock()))

    async def record_update(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Record one order update as the core decides."""
        for action in self.core.on_update(fields):
            assert isinstance(action, act.ApplyUpdate)
            await self.ledger.apply_update(stream, entry_id, action)
