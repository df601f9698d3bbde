"""Trade while this trader owns the account: signals in, at most one order per signal out.

A :class:`Trader` lives for one *term*: from taking the account's lease to losing it (or to
stop). It reads everything it needs from Redis when the term starts (positions, working orders,
the kill switch, the market), claims the entries the previous owner left pending
(``XAUTOCLAIM``), and from then on every write it makes is fenced by the lease
(:mod:`trader.fence`), every read of new entries waits until the lease is fresh, and no order
leaves unless the lease is fresh. Signals wait until a reconciliation has run since the term
began or Redis was last unavailable: an order whose intent Redis lost is adopted before its
signal, read again, could send it a second time.

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
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.contract import OrderEvent
from tickpipe.common.errors import DecodeError, RedisUnavailable
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.names import GROUP_TRADER, Partition
from tickpipe.common.redis_io import ensure_group, redis_errors
from tickpipe.common.schema import OrderIntent, Signal
from tickpipe.common.settings import Settings
from tickpipe.trader.consumer import GroupConsumer
from tickpipe.trader.control import kill_switch_on
from tickpipe.trader.core import build_intent, intent_mismatch
from tickpipe.trader.instruments import Instruments
from tickpipe.trader.lease import Lease, new_token
from tickpipe.trader.ledger import Ledger
from tickpipe.trader.market import MarketView, market_refusal, order_value_price
from tickpipe.trader.market_feed import MarketFeed
from tickpipe.trader.risk import RiskLimits, TokenBucket, breach_cancels, check_signal, to_decimal
from tickpipe.trader.venue_router import Request, VenueRouter
from tickpipe.venues.registry import OrderOptions
from tickpipe.venues.registry import venue as venue_of

__all__ = ["COUNTERS", "MAX_INFLIGHT", "Trader", "default_limits"]

log = logging.getLogger("tickpipe.trader")

COUNTERS = tuple(
    "signals_seen bad_signals orders_sent acks rejects ambiguous unresolved updates "
    "foreign_updates rate_limited cancel_signals cancels_sent cancels reconciles "
    "discrepancies adopted intent_mismatches market_refusals claimed redis_outages "
    "leases_lost intents_restored order_type_refusals".split()
)

#: Orders that may await the venue's answer at once (the next signal waits for a free slot);
#: ``TICKPIPE_MAX_ORDERS_IN_FLIGHT`` sets it for the stage.
MAX_INFLIGHT = 32
#: How long a cancel signal waits for a request under way about an order it cancels.
CANCEL_WAIT_S = 30.0
#: The alarms kept in the health record (the newest ones).
MAX_ALARMS = 10


def default_limits(settings: Settings) -> RiskLimits:
    """Build the limits from settings: position, notional, ten times the order size, symbols."""
    return RiskLimits(
        max_order_qty=Decimal(settings.order_qty) * 10,
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
        self.bucket = TokenBucket(settings.max_orders_per_s)
        self.ledger = Ledger(
            redis, self.keys, self.venue_name, clock=clock, counts=self.counts, lease=self.lease
        )
        shared: dict[str, Any] = {
            "clock": clock,
            "counts": self.counts,
            "status_attempts": status_attempts,
            "retry_base_s": retry_base_s,
            "recv_window_ms": recv_window_ms,
            "confirm_lease": self._confirm_lease,
        }
        orders = venue_of(settings.venue).order_adapter(
            settings,
            venue,
            OrderOptions(
                clock=clock,
                recv_window_ms=recv_window_ms,
                order_id_of=self._order_id_of,
                signer=signer,
                session=session,
            ),
        )
        self.router = VenueRouter(settings, self.ledger, orders=orders, **shared)
        self.instruments = Instruments(
            orders, list(settings.symbols), counts=self.counts, clock=clock,
            on_change=self._announce_filters,
        )  # fmt: skip
        self.kill_switch = False
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
        return self.router.last_order_latency_ms

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "last_order_latency_ms": self.last_order_latency_ms,
            "positions": self.ledger.positions(),
            "pnl": self.ledger.tracker.book.summary(),
            "working_orders": len(self.ledger.tracker.working()),
            "orders_in_flight": len(self.sends),
            "kill_switch": self.kill_switch,
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
            self.ledger.record_update,
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
        self.counts["cancel_signals"] += 1
        working = [o.client_order_id for o in self.ledger.tracker.working(signal.symbol)]
        await self.ledger.record_event(
            "cancel_signal",
            {
                "signal_id": signal.signal_id,
                "symbol": signal.symbol,
                "reason": signal.reason,
                "orders": ",".join(working),
            },
        )
        await self.router.cancel_all(
            working, reason=f"signal {signal.signal_id}", wait_s=CANCEL_WAIT_S
        )

    async def place(self, signal: Signal) -> None:
        """Send one order for ``signal`` unless its intent exists or a limit refuses it."""
        follow = await self.start_place(signal)
        if follow is not None:
            await follow

    async def start_place(
        self, signal: Signal, *, entry: tuple[str, str] | None = None
    ) -> Coroutine[Any, Any, None] | None:
        """Record the intent and write the order to the venue; return what follows its answer.

        The risk checks read memory only (the kill switch and the market are refreshed in the
        background), so the one Redis round trip before the order leaves is the script recording
        the intent. ``None`` means nothing is left to wait for (refused, or recorded as such).
        ``entry`` (signal stream, entry id) names the signal in a dead letter.
        """
        intent = build_intent(signal, ts_intent=self.clock(), order_type=self.settings.order_type)
        cid = intent.client_order_id
        if cid in self.router.inflight:  # this decision's request is under way here
            return self._after_inflight(signal, cid, entry)
        intent, refused = await self.shape(signal, intent)
        reason = refused or await self.refusal(signal, intent)
        if reason is not None:
            stored = await self.ledger.stored_intent(cid)
            if stored is not None:  # recorded (and maybe sent) by an earlier run
                return await self._existing(signal, intent, stored, entry)
            extra = {"reason": reason, "stage": "order" if refused else "risk"}
            await self.ledger.record(intent, OrderEvent.REJECTED, extra)
            if refused is not None:
                await self.refused_order(signal, intent, refused, entry)
            if reason.startswith(("position limit", "kill switch")):
                await self.cancel_breaches(signal.symbol)
            return None
        requests: list[Request] = []  # signed while Redis records the intent
        self.router.inflight.add(cid)  # reconciliation leaves it alone from here on
        sending = False
        try:
            stored = await self.ledger.record_intent(
                intent, meanwhile=lambda: requests.append(self.router.prepare(intent))
            )
            if stored is None:  # the send keeps it in flight until the venue answers
                sending = True
                return self.router.send(signal, intent, request=requests[0] if requests else None)
        finally:
            if not sending:
                self.router.inflight.discard(cid)
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
        """Look up an intent an earlier run recorded, unless it is another decision's.

        An intent whose outcome is already recorded (the venue's answer, a lookup by a
        reconciliation, a settlement) needs no lookup: the signal is only acknowledged.
        """
        what = intent_mismatch(stored, intent)
        if what is not None:
            await self.mismatched(signal, stored, what, entry)
            return None
        if await self.ledger.outcome_known(stored.client_order_id):
            log.info(
                "intent exists with its outcome recorded: nothing to send or look up",
                extra={"client_order_id": intent.client_order_id},
            )
            return None
        log.info(
            "intent exists: resolving, never resending",
            extra={"client_order_id": intent.client_order_id},
        )
        self.router.inflight.add(stored.client_order_id)  # resolve() takes it off at the end

        async def resolve() -> None:
            await self.router.resolve(stored, source="restart")

        return resolve()

    async def mismatched(
        self, signal: Signal, stored: OrderIntent, what: str, entry: tuple[str, str] | None
    ) -> None:
        """Dead-letter a signal whose client order id has another decision's intent; alarm."""
        cid = stored.client_order_id
        self.counts["intent_mismatches"] += 1
        self.alarms.append(f"intent mismatch: {cid}: {what}")
        del self.alarms[:-MAX_ALARMS]
        log.error(
            "intent mismatch: the signal's client order id has another decision's intent; "
            "nothing sent for this signal",
            extra={"client_order_id": cid, "signal_id": signal.signal_id, "differences": what},
        )
        stream, entry_id = entry if entry is not None else ("", "")
        await self.ledger.dead_letter(
            {
                "reason": f"intent mismatch: {what}",
                "client_order_id": cid,
                "signal_id": signal.signal_id,
                "stream": stream,
                "entry_id": entry_id,
                "signal": orjson.dumps(signal.to_fields()).decode(),
                "intent": orjson.dumps(stored.to_fields()).decode(),
            }
        )

    async def shape(self, signal: Signal, intent: OrderIntent) -> tuple[OrderIntent, str | None]:
        """Check the intent's order type with the venue and apply its instrument filters.

        Returns the intent to send (rounded where the filters allow) and ``None``, or the
        intent and why nothing may be sent (:mod:`trader.instruments`).
        """
        orders = self.router.orders
        venue_refusal = getattr(orders, "order_refusal", None)
        problem = venue_refusal(intent) if venue_refusal is not None else None
        if problem is not None:
            self.counts["order_type_refusals"] += 1
            return intent, f"order type refused: {problem}"
        await self.instruments.ensure()
        venue_type = getattr(orders, "venue_order_type", None)
        market = self.market.price(signal.symbol, signal.side)
        shaped, refused = self.instruments.shape(
            intent,
            venue_type(intent) if venue_type is not None else intent.order_type,
            market.price if market is not None else None,
        )
        return shaped, (str(refused) if refused is not None else None)

    async def _announce_filters(self, filters: InstrumentFilters) -> None:
        """Write a symbol's filters to ``{V}:orders`` for the strategies that follow them."""
        await self.ledger.record_event(OrderEvent.INSTRUMENTS, filters.to_fields())

    async def refused_order(
        self, signal: Signal, intent: OrderIntent, reason: str, entry: tuple[str, str] | None
    ) -> None:
        """Dead-letter a signal whose order the venue could not take: nothing was sent."""
        log.warning("order refused before sending: %s", reason,
                    extra={"client_order_id": intent.client_order_id,
                           "signal_id": signal.signal_id})  # fmt: skip
        stream, entry_id = entry if entry is not None else ("", "")
        await self.ledger.dead_letter(
            {
                "reason": reason,
                "client_order_id": intent.client_order_id,
                "signal_id": signal.signal_id,
                "stream": stream,
                "entry_id": entry_id,
                "signal": orjson.dumps(signal.to_fields()).decode(),
            }
        )

    async def refusal(self, signal: Signal, intent: OrderIntent) -> str | None:
        """Return why ``signal`` may not become an order now, or ``None``.

        Memory only, except when the market view has no fresh price for the symbol: then its
        partition's newest trades and quotes are read once before refusing.
        """
        if intent.order_type == "LIMIT" and not (to_decimal(signal.price) or 0) > 0:
            return f"a LIMIT order needs the signal's price, got {signal.price!r}"
        tracker = self.ledger.tracker
        position = tracker.position(signal.symbol)
        working = [o.working() for o in tracker.working(signal.symbol)]
        unpriced = dataclasses.replace(self.limits, max_notional=None)
        reason = check_signal(
            signal, unpriced, position=position, working=working, kill_switch=self.kill_switch
        )
        if reason is not None:
            return reason
        market = self.market.price(signal.symbol, signal.side)
        reason = self._market_refusal(signal, market)
        if reason is not None and reason.startswith("no market price"):
            await self.feed.load(signal.symbol)  # the view may lag the signal's own trade
            market = self.market.price(signal.symbol, signal.side)
            reason = self._market_refusal(signal, market)
        if reason is not None or market is None:
            self.counts["market_refusals"] += 1
            return reason
        value = order_value_price(market, intent.order_type, intent.price)
        reason = check_signal(signal, self.limits, position=position, working=working, price=value)
        if reason is None and not self.bucket.take(self.clock()):
            reason = f"order rate limit: more than {self.settings.max_orders_per_s:g} per second"
        return reason

    def _market_refusal(self, signal: Signal, market: Any) -> str | None:
        return market_refusal(
            signal.symbol,
            signal.price,
            market,
            now_ns=self.clock(),
            max_age_ns=int(self.settings.max_price_age_s * 1e9),
            band_bps=Decimal(self.settings.price_band_bps),
        )

    async def refresh_kill_switch(self) -> bool:
        """Read the kill switch into memory; record and log a change; return whether it is on."""
        on = await kill_switch_on(self.redis, self.settings)
        if on != self.kill_switch:
            self.kill_switch = on
            log.warning("kill switch %s", "on" if on else "off")
            await self.ledger.record_event("kill_switch", {"on": "1" if on else "0"})
        return on

    async def cancel_breaches(self, symbol: str | None = None) -> None:
        """Cancel the working orders the kill switch or a position limit no longer allows."""
        tracker = self.ledger.tracker
        if self.kill_switch:
            cids = [o.client_order_id for o in tracker.working()]
            reason = "kill switch"
        else:
            symbols = [symbol] if symbol else sorted({o.symbol for o in tracker.working()})
            cids = []
            for s in symbols:
                working = [o.working() for o in tracker.working(s)]
                cids += breach_cancels(s, tracker.position(s), working, self.limits)
            reason = "position limit"
        cids = [c for c in cids if c not in self.router.inflight]
        if cids:
            await self.router.cancel_all(cids, reason=reason)
