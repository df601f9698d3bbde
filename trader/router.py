"""Send, look up, cancel and reconcile orders at the venue; record every outcome in the ledger.

At most one order per intent: ``order.place`` requests of one intent are all signed with the
intent's own timestamp, so the venue refuses any of them that arrives later than the receive
window (``recvWindow``) after the intent was made. An ambiguous outcome is resolved by
``order.status`` only; "no such order" is final once that window (plus a margin for clock skew)
has passed, since no copy of the request can be accepted any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from common.backoff import Backoff
from common.binance import MS
from common.errors import AmbiguousOutcome, AuthError, RateLimited
from common.schema import OrderIntent, Signal
from common.settings import Settings
from trader.binance_ws_api import Venue, VenueUnavailable
from trader.core import (
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    cancel_params,
    list_result_of,
    open_orders_params,
    place_params,
    result_of,
    status_params,
)
from trader.ledger import Ledger
from trader.orders import TERMINAL, OrderState
from trader.risk import to_decimal
from trader.signing import Signer

__all__ = ["Router"]

log = logging.getLogger("tickpipe.trader")

SKEW_MARGIN_MS = 1000
CANCEL_RETRY_S = 2.0


def _same(state: OrderState, order: dict[str, Any]) -> bool:
    """Whether the venue's order says what ``state`` already knows (status and fills)."""
    filled = to_decimal(str(order.get("executedQty", "")))
    return state.status == order.get("status") and filled == to_decimal(state.filled_qty)


class Router:
    """The trader's requests to the venue, one method per kind of request."""

    def __init__(
        self,
        settings: Settings,
        venue: Venue,
        ledger: Ledger,
        *,
        clock: Callable[[], int],
        counts: dict[str, int],
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
        signer: Signer | None = None,
        session: bool = False,
    ) -> None:
        self.settings = settings
        self.signer = signer  # None: HMAC with the API secret
        self.session = session  # the connection is logged on: requests carry no signature
        self.venue = venue
        self.ledger = ledger
        self.clock = clock
        self.counts = counts
        self.status_attempts = status_attempts
        self.retry_base_s = retry_base_s
        self.recv_window_ms = recv_window_ms
        self.inflight: set[str] = set()  # client order ids with a request under way here
        self.last_order_latency_ms: float | None = None
        self._cancel_tried: dict[str, float] = {}

    def _auth(self) -> dict[str, Any]:
        return {
            "api_key": self.settings.binance_api_key.reveal(),
            "api_secret": self.settings.binance_api_secret.reveal(),
            "recv_window_ms": self.recv_window_ms,
            "signer": self.signer,
            "session": self.session,
        }

    def _now_ms(self) -> int:
        return self.clock() // MS

    # -- place -----------------------------------------------------------------------------------
    async def send(self, signal: Signal, intent: OrderIntent) -> None:
        """Send ``order.place`` for ``intent``; resolve anything ambiguous by ``order.status``."""
        self.inflight.add(intent.client_order_id)
        try:
            await self._send(signal, intent)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def _send(self, signal: Signal, intent: OrderIntent) -> None:
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        # Every copy carries the intent's time: the venue refuses one that arrives too late.
        params = place_params(intent, timestamp_ms=intent.ts_intent // MS, **self._auth())
        while True:
            sent_ns = self.clock()
            try:
                response = await self.venue.place(params)
                result = result_of(response, now_ms=self._now_ms())
            except VenueUnavailable as exc:  # certainly not sent: try again
                log.warning("venue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(backoff.next_delay_s())
                continue
            except RateLimited as exc:  # the venue refused the request: no order, try again
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

    def _count_sent(self, signal: Signal, sent_ns: int) -> None:
        self.counts["orders_sent"] += 1
        self.last_order_latency_ms = round((sent_ns - signal.ts_event) / MS, 3)

    # -- status ----------------------------------------------------------------------------------
    async def resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up until the venue says what happened; never send it again."""
        self.inflight.add(intent.client_order_id)
        try:
            return await self._resolve(intent, source=source)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def _resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Query ``order.status``; "no such order" settles it once no copy can be accepted.

        Answers that say nothing (timeouts, 5xx) are retried ``status_attempts`` times; then the
        intent stays working (an ``unknown`` entry) for the next reconciliation.
        """
        backoff = Backoff(base_s=self.retry_base_s, cap_s=2.0)
        unknown = 0
        last = "no answer"
        while True:
            try:
                params = status_params(
                    intent.symbol,
                    intent.client_order_id,
                    timestamp_ms=self._now_ms(),
                    **self._auth(),
                )
                response = await self.venue.status(params)
                result = result_of(response, now_ms=self._now_ms())
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

    # -- cancel ----------------------------------------------------------------------------------
    async def cancel(self, client_order_id: str, *, reason: str) -> None:
        """Cancel one working order; an unclear answer is settled by ``order.status``."""
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
            for _ in range(self.status_attempts):
                params = cancel_params(
                    intent.symbol, client_order_id, timestamp_ms=self._now_ms(), **self._auth()
                )
                try:
                    response = await self.venue.cancel(params)
                    result = result_of(response, now_ms=self._now_ms())
                except RateLimited as exc:
                    self.counts["rate_limited"] += 1
                    await asyncio.sleep(min(max(exc.retry_after_s, 0.1), 60.0))
                    continue
                except VenueUnavailable:
                    await asyncio.sleep(self.retry_base_s)
                    continue
                except (OrderNotFound, AmbiguousOutcome, DuplicateOrder) as exc:
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
        finally:
            self.inflight.discard(client_order_id)

    async def cancel_all(self, client_order_ids: list[str], *, reason: str) -> None:
        """Cancel several working orders, one after the other."""
        for cid in client_order_ids:
            await self.cancel(cid, reason=reason)

    # -- reconcile -------------------------------------------------------------------------------
    async def reconcile(self, *, reason: str) -> int:
        """Compare every working order with the venue's view; return the discrepancies found.

        ``openOrders.status`` lists what is open at the venue; each working intent that is not in
        that list (or every one, if the venue cannot list) is looked up with ``order.status``.
        Intents the venue never got are settled ``not_found`` (orphans); open venue orders this
        trader has no record of are reported.
        """
        self.counts["reconciles"] += 1
        open_at_venue: dict[str, dict[str, Any]] | None = None
        try:
            params = open_orders_params(timestamp_ms=self._now_ms(), **self._auth())
            listed = list_result_of(await self.venue.open_orders(params), now_ms=self._now_ms())
            open_at_venue = {str(o.get("clientOrderId")): o for o in listed if isinstance(o, dict)}
        except (OrderRejected, AmbiguousOutcome, VenueUnavailable, RateLimited) as exc:
            log.warning("open orders not listed; querying each", extra={"error": str(exc)})
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
                if before is not None and _same(before, listed_order):
                    continue
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
        self.counts["discrepancies"] += found
        log.info("reconciled", extra={"reason": reason, "discrepancies": found})
        return found

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
