"""Share what every venue's router does: retries, settling unclear outcomes, reconciliation.

One router serves every venue; the venue's order adapter (its package's ``order_adapter``, built
by :func:`venues.registry.venue`) speaks its requests (:class:`OrderAdapter`), each answering a
Binance-shaped order dict (``status``, ``executedQty``, ``orderId``...) or raising the common
errors (:class:`~common.errors.AmbiguousOutcome`, :class:`~common.errors.RateLimited`,
:class:`~common.errors.OrderRejected`...): ``placer`` (the request that places one order, the
same on every try), ``lookup`` (look an order up by its client order id), ``canceller`` (the
request that cancels one working order), ``list_open`` (the venue's open orders) and
``list_recent`` (every order, open or closed, placed since a time).
The retries, the resolution of unclear outcomes, in-flight bookkeeping, cancel pacing,
reconciliation and adoption are here, written once.

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
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, Required, TypedDict

from common.backoff import Backoff
from common.errors import (
    AmbiguousOutcome,
    AuthError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    VenueUnavailable,
)
from common.schema import OrderIntent, Signal
from common.settings import Settings
from common.units import MS
from trader.core import adopted_intent, is_own_client_order_id
from trader.fence import LeaseLost
from trader.ledger import Ledger
from trader.orders import TERMINAL, OrderState
from trader.risk import to_decimal

__all__ = [
    "CANCEL_RETRY_S",
    "SKEW_MARGIN_MS",
    "InFlight",
    "OrderAdapter",
    "Request",
    "RouterOptions",
    "VenueRouter",
]

log = logging.getLogger("tickpipe.trader")

CANCEL_RETRY_S = 2.0
SKEW_MARGIN_MS = 1000
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


class RouterOptions(TypedDict, total=False):
    """Name the keyword options every venue router passes on to :class:`VenueRouter`."""

    clock: Required[Callable[[], int]]
    counts: Required[dict[str, int]]
    status_attempts: int
    retry_base_s: float
    recv_window_ms: int
    confirm_lease: Callable[[], Awaitable[None]]


async def _no_lease() -> None:
    return None


def _same(state: OrderState, order: dict[str, Any]) -> bool:
    """Whether the venue's order says what ``state`` already knows (status and fills)."""
    filled = to_decimal(str(order.get("executedQty", "")))
    return state.status == order.get("status") and filled == to_decimal(state.filled_qty)


class InFlight:
    """The client order ids with a request under way; a caller may wait for one to finish."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._changed = asyncio.Event()

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, client_order_id: str) -> None:
        self._ids.add(client_order_id)

    def discard(self, client_order_id: str) -> None:
        if client_order_id in self._ids:
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
    """The trader's requests to one venue; its :class:`OrderAdapter` speaks the venue's requests."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        clock: Callable[[], int],
        counts: dict[str, int],
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
        confirm_lease: Callable[[], Awaitable[None]] = _no_lease,
        orders: OrderAdapter,
    ) -> None:
        self.settings = settings
        self.orders = orders
        self.ledger = ledger
        self.clock = clock
        self.counts = counts
        self.status_attempts = status_attempts
        self.retry_base_s = retry_base_s
        self.recv_window_ms = recv_window_ms
        self.confirm_lease = confirm_lease
        self.scanned_to_ms: int | None = None  # the venue's orders are adopted up to here
        self.inflight = InFlight()  # client order ids with a request under way here
        self.last_order_latency_ms: float | None = None
        self._cancel_tried: dict[str, float] = {}

    def _now_ms(self) -> int:
        return self.clock() // MS

    async def _leave(self, what: str) -> None:
        """Raise :class:`LeaseLost` unless the lease allows sending ``what`` now."""
        try:
            await self.confirm_lease()
        except LeaseLost as exc:
            raise LeaseLost(f"{what} not sent: {exc}") from exc

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
            await self._send(signal, intent, request)
        finally:
            self.inflight.discard(intent.client_order_id)

    def _count_sent(self, signal: Signal, sent_ns: int) -> None:
        self.counts["orders_sent"] += 1
        self.last_order_latency_ms = round((sent_ns - signal.ts_event) / MS, 3)

    async def _send(self, signal: Signal, intent: OrderIntent, request: Request | None) -> None:
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        place = request if request is not None else self.orders.placer(intent)
        while True:
            await self._leave(f"order {intent.client_order_id}")
            sent_ns = self.clock()
            try:
                result = await place()
            except VenueUnavailable as exc:  # never connected: certainly not sent, try again
                log.warning("venue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(backoff.next_delay_s())
                continue
            except RateLimited as exc:  # refused before it was placed: no order, try again
                self.counts["rate_limited"] += 1
                await asyncio.sleep(min(max(exc.retry_after_s, backoff.next_delay_s()), 60.0))
                continue
            except AuthError as exc:
                await self.ledger.record(
                    intent, "rejected", {"reason": str(exc), "stage": "venue"}, settle=True
                )
                raise
            except (AmbiguousOutcome, DuplicateOrder) as exc:
                self._count_sent(signal, sent_ns)
                self.counts["ambiguous"] += isinstance(exc, AmbiguousOutcome)
                log.warning(
                    "order outcome unknown, querying",
                    extra={"client_order_id": intent.client_order_id, "error": str(exc)},
                )
                await self._resolve(intent, source="ambiguous")
                return
            except (OrderRejected, OrderNotFound) as exc:
                self._count_sent(signal, sent_ns)
                extra = {"reason": str(exc), "stage": "venue", "code": str(exc.code or "")}
                await self.ledger.record(intent, "rejected", extra, settle=True)
                return
            self._count_sent(signal, sent_ns)
            await self.ledger.record_result(intent, result, source="place")
            return

    async def resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up until the venue says what happened; never send it again."""
        self.inflight.add(intent.client_order_id)
        try:
            return await self._resolve(intent, source=source)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def _resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up; "no such order" settles it once no copy can be accepted.

        That is once the receive window (plus a margin for clock skew) has passed since the
        intent. Answers that say nothing (timeouts, 5xx) are retried ``status_attempts`` times;
        then the intent stays working (an ``unknown`` entry) for the next reconciliation.
        """
        backoff = Backoff(base_s=self.retry_base_s, cap_s=2.0)
        unknown = 0
        last = "no answer"
        while True:
            try:
                result = await self.orders.lookup(intent)
            except OrderNotFound as exc:
                late_ms = intent.ts_intent // MS + self.recv_window_ms + SKEW_MARGIN_MS
                if self._now_ms() >= late_ms:
                    await self.ledger.record(
                        intent,
                        "not_found",
                        {"reason": f"the venue has no such order: {exc}", "source": source},
                        settle=True,
                    )
                    return None
                await asyncio.sleep(min(2.0, (late_ms - self._now_ms()) / 1000 + 0.01))
                continue
            except (AmbiguousOutcome, VenueUnavailable, OrderRejected, DuplicateOrder) as exc:
                unknown, last = unknown + 1, str(exc)
            except RateLimited as exc:
                unknown, last = unknown + 1, str(exc)
                await asyncio.sleep(min(exc.retry_after_s, 60.0))
            else:
                return await self.ledger.record_result(intent, result, source=f"status:{source}")
            if unknown >= self.status_attempts:
                self.counts["unresolved"] += 1
                await self.ledger.record(intent, "unknown", {"reason": last, "source": source})
                return None
            await asyncio.sleep(backoff.next_delay_s())

    async def cancel(self, client_order_id: str, *, reason: str, wait_s: float = 0.0) -> None:
        """Cancel one working order; an unclear answer is settled by a query.

        An order with a request under way (a lookup by a reconciliation, say) is left alone, or
        waited for up to ``wait_s`` first (a cancel signal must not be lost to that race).
        """
        if wait_s > 0:
            await self.inflight.wait_free(client_order_id, wait_s)
        intent = await self.ledger.stored_intent(client_order_id)
        if intent is None or client_order_id in self.inflight:
            return
        now = time.monotonic()
        if now - self._cancel_tried.get(client_order_id, -1e9) < CANCEL_RETRY_S:
            return  # tried a moment ago; the next guard round tries again
        self._cancel_tried[client_order_id] = now
        if len(self._cancel_tried) > 10_000:
            self._cancel_tried.clear()
        self.inflight.add(client_order_id)
        try:
            await self.ledger.record(intent, "cancel_requested", {"reason": reason})
            self.counts["cancels_sent"] += 1
            await self._cancel(intent)
        finally:
            self.inflight.discard(client_order_id)

    async def _cancel(self, intent: OrderIntent) -> None:
        """Send the cancel; an unclear answer is settled by a query."""
        client_order_id = intent.client_order_id
        request = await self.orders.canceller(intent)
        for _ in range(self.status_attempts):
            await self._leave(f"cancel of {client_order_id}")
            try:
                result = await request()
            except RateLimited as exc:
                self.counts["rate_limited"] += 1
                await asyncio.sleep(min(max(exc.retry_after_s, 0.1), 60.0))
                continue
            except VenueUnavailable:
                await asyncio.sleep(self.retry_base_s)
                continue
            except self.orders.cancel_unclear as exc:
                # Not open any more (filled first?) or unclear: ask what it is now.
                log.info(
                    "cancel unclear, querying",
                    extra={"client_order_id": client_order_id, "error": str(exc)},
                )
                await self._resolve(intent, source="cancel")
                return
            except OrderRejected as exc:
                await self.ledger.record(intent, "cancel_rejected", {"reason": str(exc)})
                return
            await self.ledger.record_result(intent, result, source="cancel", event="canceled")
            self.counts["cancels"] += 1
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
                if before is not None and before.order_id and _same(before, listed_order):
                    continue  # nothing new (an order never acknowledged learns its id here)
                after: OrderState | None = await self.ledger.record_result(
                    intent, listed_order, source=f"reconcile:{reason}", event="reconciled"
                )
            else:
                after = await self.resolve(intent, source=f"reconcile:{reason}")
            found += await self._compare(cid, before, after, reason)
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

    async def _compare(
        self, cid: str, before: OrderState | None, after: OrderState | None, reason: str
    ) -> int:
        if before is None or (after is None and cid in self.ledger.tracker.orders):
            return 0  # unknown before, or still unresolved: nothing to compare yet
        if after is not None and (after.status, after.filled_qty) == (
            before.status,
            before.filled_qty,
        ):
            return 0
        kind = "orphan_intent" if after is None else "state_changed"
        await self.ledger.record_event(
            "discrepancy",
            {
                "client_order_id": cid,
                "symbol": before.symbol,
                "kind": kind,
                "reason": reason,
                "was": f"{before.status} {before.filled_qty}",
                "venue": "none" if after is None else f"{after.status} {after.filled_qty}",
                "terminal": "1" if after is None or after.status in TERMINAL else "0",
            },
        )
        return 1
