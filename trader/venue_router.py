"""Share what every venue's router does: in-flight bookkeeping, cancel pacing, reconciliation.

A venue router (:class:`trader.router.Router` for Binance's WebSocket API,
:class:`trader.alpaca_router.AlpacaRouter` for Alpaca's REST API) implements four requests:
``_send`` (place one order, resolving an unclear outcome by a query), ``_resolve`` (look an order
up by its client order id, never sending it again), ``_cancel`` (cancel one working order) and
``_open_at_venue`` (the venue's open orders by client order id, as Binance-shaped order dicts:
``status``, ``executedQty``, ``orderId``...). Everything else is here, written once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from common.binance import MS
from common.schema import OrderIntent, Signal
from common.settings import Settings
from trader.ledger import Ledger
from trader.orders import TERMINAL, OrderState
from trader.risk import to_decimal

__all__ = ["CANCEL_RETRY_S", "VenueRouter"]

log = logging.getLogger("tickpipe.trader")

CANCEL_RETRY_S = 2.0


def _same(state: OrderState, order: dict[str, Any]) -> bool:
    """Whether the venue's order says what ``state`` already knows (status and fills)."""
    filled = to_decimal(str(order.get("executedQty", "")))
    return state.status == order.get("status") and filled == to_decimal(state.filled_qty)


class VenueRouter:
    """The trader's requests to one venue; subclasses implement the four venue requests."""

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
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.clock = clock
        self.counts = counts
        self.status_attempts = status_attempts
        self.retry_base_s = retry_base_s
        self.recv_window_ms = recv_window_ms
        self.inflight: set[str] = set()  # client order ids with a request under way here
        self.last_order_latency_ms: float | None = None
        self._cancel_tried: dict[str, float] = {}

    def _now_ms(self) -> int:
        return self.clock() // MS

    # -- the venue's requests (subclasses) -------------------------------------------------------
    async def _send(self, signal: Signal, intent: OrderIntent) -> None:
        raise NotImplementedError

    async def _resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        raise NotImplementedError

    async def _cancel(self, intent: OrderIntent) -> None:
        raise NotImplementedError

    async def _open_at_venue(self) -> dict[str, dict[str, Any]] | None:
        """Return the venue's open orders by client order id, or ``None`` if it cannot list."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    async def send(self, signal: Signal, intent: OrderIntent) -> None:
        """Send the order for ``intent`` once; resolve anything ambiguous by a query."""
        self.inflight.add(intent.client_order_id)
        try:
            await self._send(signal, intent)
        finally:
            self.inflight.discard(intent.client_order_id)

    def _count_sent(self, signal: Signal, sent_ns: int) -> None:
        self.counts["orders_sent"] += 1
        self.last_order_latency_ms = round((sent_ns - signal.ts_event) / MS, 3)

    async def resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Look the order up until the venue says what happened; never send it again."""
        self.inflight.add(intent.client_order_id)
        try:
            return await self._resolve(intent, source=source)
        finally:
            self.inflight.discard(intent.client_order_id)

    async def cancel(self, client_order_id: str, *, reason: str) -> None:
        """Cancel one working order; an unclear answer is settled by a query."""
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

    async def cancel_all(self, client_order_ids: list[str], *, reason: str) -> None:
        """Cancel several working orders, one after the other."""
        for cid in client_order_ids:
            await self.cancel(cid, reason=reason)

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
