"""Carry the core's orders to the venue: send, look up, cancel, reconcile (the I/O side).

One router serves every venue; the venue's order adapter (its package's ``order_adapter``, built
by :func:`venues.registry.venue`) speaks its requests (:class:`OrderAdapter`), each answering a
Binance-shaped order dict (``status``, ``executedQty``, ``orderId``...) or raising the common
errors (:class:`~common.errors.AmbiguousOutcome`, :class:`~common.errors.RateLimited`,
:class:`~common.errors.OrderRejected`...): ``placer`` (the request that places one order, the
same on every try), ``lookup`` (look an order up by its client order id), ``canceller`` (the
request that cancels one working order), ``list_open`` (the venue's open orders) and
``list_recent`` (every order, open or closed, placed since a time).
What each answer means (retry, record, settle by a lookup, give up) is decided by the pure
:class:`trader.core.TraderCore` (``on_answer``, ``on_lookup``, ``on_cancel_answer``,
``may_cancel``); this module sends, waits, and executes the actions it returns. The in-flight
set is the core's; :class:`InFlight` lets a caller wait for one of its ids. Reconciliation and
adoption (listing, looking up, recording) are here, written once for every venue.

Nothing goes to the venue unless ``confirm_lease()`` confirms that the trader still holds its
lease (right before each order and each cancel leaves; a renewal when the last one is not
recent): an owner that was frozen and thawed after losing the lease sends nothing
(:class:`~trader.fence.LeaseLost`).

Adoption: reconciliation also lists the venue's recent orders (since
``TICKPIPE_RECONCILE_LOOKBACK_S`` at start and after a Redis reconnect, else since the last
scan) and records each one that carries this pipeline's client order id but has no intent in
Redis (Redis lost it: an AOF tail cut by a crash), with its fills, a warning and the
``adopted`` counter. It is never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import OrderIntent, Signal
from tickpipe.common.settings import Settings
from tickpipe.common.units import MS
from tickpipe.trader import actions as act
from tickpipe.trader.core import (
    TraderCore,
    adopted_intent,
    discrepancy,
    is_own_client_order_id,
    same_order,
)
from tickpipe.trader.fence import LeaseLost
from tickpipe.trader.ledger import Ledger
from tickpipe.trader.orders import OrderState
from tickpipe.trader.risk import RiskLimits

__all__ = [
    "InFlight",
    "OrderAdapter",
    "Request",
    "VenueRouter",
]

log = logging.getLogger("tickpipe.trader")

#: A later scan for orders to adopt starts this long before the previous one ended.
RESCAN_OVERLAP_MS = 60_000
#: Reconciliation reasons after which the whole lookback is scanned for orders to adopt.
FULL_SCAN_REASONS = frozenset({"start", "redis-reconnect"})

Request = Callable[[], Awaitable[dict[str, Any]]]


class OrderAdapter(Protocol):
    """What a venue's order adapter answers (:mod:`venues.binance.order_adapter`, ...).

    Every request answers a Binance-shaped order dict (``status``, ``executedQty``,
    ``orderId``...) or raises the errors of :mod:`common.errors`.
    """

    #: Errors that make a cancel unclear (settled by a query); any other OrderRejected is final.
    cancel_unclear: tuple[type[Exception], ...]
    #: Errors on listing the open orders after which each working order is queried instead.
    list_failed: tuple[type[Exception], ...]

    def placer(self, intent: OrderIntent) -> Request:
        """Return the request that places ``intent``; every try sends the same one."""

    async def lookup(self, intent: OrderIntent) -> dict[str, Any]:
        """Look the order up by its client order id; return it as the venue shows it."""

    async def canceller(self, intent: OrderIntent) -> Request:
        """Return the request that cancels ``intent`` and answers the order as it is then."""

    async def list_open(self) -> list[dict[str, Any]] | None:
        """Return the venue's open orders, or ``None`` if the answer holds no list."""

    async def list_recent(self, since_ms: int) -> list[dict[str, Any]] | None:
        """Return the venue's orders (open or closed) placed since ``since_ms``, or ``None``."""


async def _no_lease() -> None:
    return None


async def _answer_of(request: Request) -> dict[str, Any] | Exception:
    """The request's answer, or the error it raised: the core decides what each error means."""
    try:
        return await request()
    except Exception as exc:
        return exc


class InFlight:
    """The core's client order ids with a request under way; a caller may wait for one to end."""

    def __init__(self, ids: set[str] | None = None) -> None:
        self._ids: set[str] = ids if ids is not None else set()
        self._changed = asyncio.Event()

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, client_order_id: str) -> None:
        self._ids.add(client_order_id)

    def discard(self, client_order_id: str) -> None:
        """Take ``client_order_id`` off (the core may have done so) and wake the waiters."""
        self._ids.discard(client_order_id)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_free(self, client_order_id: str, timeout_s: float) -> bool:
        """Wait until ``client_order_id`` has no request under way; return whether it has none."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while client_order_id in self._ids:
                    await self._changed.wait()
        return client_order_id not in self._ids


class VenueRouter:
    """Execute the core's requests to one venue; its :class:`OrderAdapter` speaks the venue's."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Callable[[], int],
        counts: dict[str, int] | None = None,
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
        confirm_lease: Callable[[], Awaitable[None]] = _no_lease,
        orders: OrderAdapter,
        core: TraderCore | None = None,
    ) -> None:
        self.settings = settings
        self.orders = orders
        self.ledger = ledger
        self.clock = clock
        if core is None:  # a router of its own (tests): the ledger's orders, no limits
            core = TraderCore(
                RiskLimits(), counts=counts, status_attempts=status_attempts,
                recv_window_ms=recv_window_ms,
            )  # fmt: skip
            core.tracker = ledger.tracker
        self.core = core
        core.unique_client_ids = bool(getattr(orders, "unique_client_ids", False))
        core.replaces_in_place = frozenset(getattr(orders, "replaces_in_place", ()))
        self.counts = core.counts  # one set of counters: the core's
        self.retry_base_s = retry_base_s
        self.confirm_lease = confirm_lease
        self.scanned_to_ms: int | None = None  # the venue's orders are adopted up to here
        self.inflight = InFlight(self.core.inflight)  # waits on the core's in-flight set

    @property
    def recv_window_ms(self) -> int:
        return self.core.recv_window_ms

    @recv_window_ms.setter
    def recv_window_ms(self, value: int) -> None:
        self.core.recv_window_ms = value

    @property
    def last_order_latency_ms(self) -> float | None:
        return self.core.last_order_latency_ms

    def _now_ms(self) -> int:
        return self.clock() // MS

    async def _leave(self, what: str) -> None:
        """Raise :class:`LeaseLost` unless the lease allows sending ``what`` now."""
        try:
            await self.confirm_lease()
        except LeaseLost as exc:
            raise LeaseLost(f"{what} not sent: {exc}") from exc

    async def _pause(self, retry: act.Retry, backoff: Backoff) -> None:
        """Wait as a :class:`Retry` asks: at least its delay, the backoff's if it says so."""
        delay = max(retry.at_least_s, backoff.next_delay_s()) if retry.backoff else retry.at_least_s
        await asyncio.sleep(min(delay, retry.cap_s))

    async def _settle(self, intent: OrderIntent, actions: list[act.Action]) -> OrderState | None:
        """Execute the core's verdict on an answer (anything but a retry); return the state."""
        state: OrderState | None = None
        for action in actions:
            if isinstance(action, act.RecordResult):
                state = await self.ledger.record_result(
                    action.intent, dict(action.result), source=action.source, event=action.event
                )
            elif isinstance(action, act.Record):
                await self.ledger.record(
                    action.intent, action.event, action.extra, settle=action.settle
                )
            elif isinstance(action, act.Resolve):
                log.warning(
                    "outcome unclear, querying",
                    extra={"client_order_id": intent.client_order_id, "source": action.source},
                )
                state = await self._resolve(action.intent, source=action.source)
            elif isinstance(action, act.Send):  # never placed (see TraderCore.on_lookup)
                log.warning(
                    "the venue never got this decision; placing it now, once",
                    extra={"client_order_id": intent.client_order_id},
                )
                state = await self._send(action.intent, None, ts_event=intent.ts_intent)
            elif isinstance(action, act.DeadLetter):
                log.warning(action.fields.get("reason", "dead letter"),
                            extra={"client_order_id": intent.client_order_id})  # fmt: skip
                await self.ledger.dead_letter(action.fields)
            elif isinstance(action, act.Fail):
                raise action.error
        return state

    # -- shared ----------------------------------------------------------------------------------
    def prepare(self, intent: OrderIntent) -> Request:
        """Return the request that places ``intent`` (signed, pure work: no I/O)."""
        return self.orders.placer(intent)

    async def send(
        self, signal: Signal, intent: OrderIntent, *, request: Request | None = None
    ) -> None:
        """Send the order for ``intent`` once; resolve anything ambiguous by a query.

        ``request`` is what :meth:`prepare` returned for ``intent``, if it was called already.
        """
        self.inflight.add(intent.client_order_id)
        try:
            await self._send(intent, request, ts_event=signal.ts_event)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def _send(
        self, intent: OrderIntent, request: Request | None, *, ts_event: int
    ) -> OrderState | None:
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        place = request if request is not None else self.orders.placer(intent)
        while True:
            await self._leave(f"order {intent.client_order_id}")
            sent_ns = self.clock()
            answer = await _answer_of(place)
            actions = self.core.on_answer(intent, answer, sent_ns=sent_ns, ts_event=ts_event)
            if isinstance(actions[0], act.Retry):
                log.warning("order not placed; trying again", extra={"error": str(answer)})
                await self._pause(actions[0], backoff)
                continue
            return await self._settle(intent, actions)

    async def resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up until the venue says what happened; send it again only as the core
        decides for a decision the venue never got (``TraderCore.on_lookup``)."""
        self.inflight.add(intent.client_order_id)
        try:
            return await self._resolve(intent, source=source)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def _resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up until the core settles it (see ``TraderCore.on_lookup``)."""
        backoff = Backoff(base_s=self.retry_base_s, cap_s=2.0)
        failures = 0
        cid = intent.client_order_id
        if cid not in self.core.placed_again:  # placed again by an earlier run of the trader?
            at = await self.ledger.placed_again_at(cid)
            if at:
                self.core.placed_again[cid] = at
        while True:
            answer = await _answer_of(lambda: self.orders.lookup(intent))
            actions = self.core.on_lookup(
                intent, answer, now_ns=self.clock(), source=source, failures=failures
            )
            if isinstance(actions[0], act.Retry):
                failures += actions[0].failed
                await self._pause(actions[0], backoff)
                continue
            return await self._settle(intent, actions)

    async def cancel(self, client_order_id: str, *, reason: str, wait_s: float = 0.0) -> None:
        """Cancel one working order; an unclear answer is settled by a query.

        An order with a request under way (a lookup by a reconciliation, say) is left alone, or
        waited for up to ``wait_s`` first (a cancel signal must not be lost to that race).
        """
        if wait_s > 0:
            await self.inflight.wait_free(client_order_id, wait_s)
        intent = await self.ledger.stored_intent(client_order_id)
        if intent is None or not self.core.may_cancel(client_order_id, self.clock()):
            return
        self.inflight.add(client_order_id)
        try:
            await self.ledger.record(intent, "cancel_requested", {"reason": reason})
            await self._cancel(intent)
        finally:
            self.inflight.discard(client_order_id)

    async def _cancel(self, intent: OrderIntent) -> None:
        """Send the cancel; the core decides what its answer means."""
        request = await self.orders.canceller(intent)
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        for _ in range(self.core.status_attempts):
            await self._leave(f"cancel of {intent.client_order_id}")
            answer = await _answer_of(request)
            actions = self.core.on_cancel_answer(intent, answer, unclear=self.orders.cancel_unclear)
            if isinstance(actions[0], act.Retry):
                await self._pause(actions[0], backoff)
                continue
            await self._settle(intent, actions)
            return

    async def _open_at_venue(self) -> dict[str, dict[str, Any]] | None:
        """Return the venue's open orders by client order id, or ``None`` if it cannot list."""
        try:
            listed = await self.orders.list_open()
        except self.orders.list_failed as exc:
            log.warning("open orders not listed; querying each", extra={"error": str(exc)})
            return None
        if listed is None:
            return None
        return {str(o.get("clientOrderId")): o for o in listed}

    async def cancel_all(
        self, client_order_ids: list[str], *, reason: str, wait_s: float = 0.0
    ) -> None:
        """Cancel several working orders, one after the other."""
        for cid in client_order_ids:
            await self.cancel(cid, reason=reason, wait_s=wait_s)

    async def reconcile(self, *, reason: str) -> int:
        """Compare every working order with the venue's view; return the discrepancies found.

        The venue's open orders are listed; each working intent that is not in that list (or
        every one, if the venue cannot list) is looked up by its client order id. Intents the
        venue never got are settled ``not_found`` (orphans); open venue orders this trader has no
        record of are reported.
        """
        self.counts["reconciles"] += 1
        open_at_venue = await self._open_at_venue()
        found = 0
        working = await self.ledger.working_ids()
        for cid in working:
            if cid in self.inflight:
                continue
            intent = await self.ledger.stored_intent(cid)
            if intent is None:
                continue
            before = await self.ledger.order_state(cid)
            if open_at_venue is not None and cid in open_at_venue:
                listed_order = open_at_venue[cid]
                if before is not None and before.order_id and same_order(before, listed_order):
                    continue  # nothing new (an order never acknowledged learns its id here)
                after: OrderState | None = await self.ledger.record_result(
                    intent, listed_order, source=f"reconcile:{reason}", event="reconciled"
                )
            else:
                after = await self.resolve(intent, source=f"reconcile:{reason}")
            tracked = cid in self.ledger.tracker.orders
            entry = discrepancy(cid, before, after, reason=reason, tracked=tracked)
            if entry is not None:
                found += 1
                await self.ledger.record_event("discrepancy", entry)
        for cid, order in (open_at_venue or {}).items():
            if cid in working or cid in self.inflight:
                continue
            known = await self.ledger.stored_intent(cid) is not None
            found += 1  # open at the venue, but unknown here or settled here
            await self.ledger.record_event(
                "discrepancy",
                {
                    "client_order_id": cid,
                    "symbol": str(order.get("symbol", "")),
                    "kind": "settled_here_open_at_venue" if known else "unknown_open_order",
                    "reason": reason,
                },
            )
        found += await self._adopt(reason)
        self.counts["discrepancies"] += found
        log.info("reconciled", extra={"reason": reason, "discrepancies": found})
        return found

    async def _adopt(self, reason: str) -> int:
        """Adopt the venue's recent orders of this pipeline that Redis has no intent of."""
        now_ms = self._now_ms()
        since_ms = now_ms - int(self.settings.reconcile_lookback_s * 1000)
        if self.scanned_to_ms is not None and not FULL_SCAN_REASONS & set(reason.split(",")):
            since_ms = max(since_ms, self.scanned_to_ms - RESCAN_OVERLAP_MS)
        try:
            listed = await self.orders.list_recent(since_ms)
        except self.orders.list_failed as exc:
            log.warning("recent orders not listed; adoption postponed", extra={"error": str(exc)})
            return 0
        if listed is None:
            return 0
        own = {
            str(o.get("clientOrderId")): o
            for o in listed
            if is_own_client_order_id(str(o.get("clientOrderId", "")))
        }
        unknown = await self.ledger.unknown_intents([c for c in own if c not in self.inflight])
        adopted = 0
        for cid in unknown:
            order = own[cid]
            intent = adopted_intent(order, venue=self.ledger.venue, ts_intent=self.clock())
            if not await self.ledger.adopt(intent, order, reason=reason):
                continue  # its intent was recorded meanwhile: not an orphan
            adopted += 1
            self.counts["adopted"] += 1
            log.warning(
                "order adopted: the venue has it, Redis had no intent (lost writes?)",
                extra={
                    "client_order_id": cid,
                    "symbol": intent.symbol,
                    "status": str(order.get("status", "")),
                    "executed_qty": str(order.get("executedQty", "")),
                    "reason": reason,
                },
            )
        self.scanned_to_ms = now_ms
        return adopted
