"""Send, look up, cancel and reconcile Alpaca orders over REST; record every outcome.

At most one order per intent: the order is ``POST /v2/orders`` once, with the intent's client
order id, which Alpaca keeps unique for ever. A 422 "client_order_id must be unique" therefore
means the order exists, and a timeout, a dropped connection or a 5xx means it may exist: both are
resolved by ``GET /v2/orders:by_client_order_id`` only, never by sending again. "No such order" is
final once ``recv_window_ms`` (plus a margin) has passed since the intent, time enough for any
copy of the request still on its way; a later copy would show up at reconciliation as an open
order settled here. Cancel is ``DELETE /v2/orders/{id}``; reconciliation lists
``GET /v2/orders?status=open``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from common.backoff import Backoff
from common.binance import MS
from common.errors import AmbiguousOutcome, AuthError, RateLimited
from common.schema import OrderIntent, Signal
from common.settings import Settings
from trader.alpaca_core import classify, order_body, order_result
from trader.alpaca_rest import AlpacaRest
from trader.binance_ws_api import VenueUnavailable
from trader.core import DuplicateOrder, OrderNotFound, OrderRejected
from trader.ledger import Ledger
from trader.orders import OrderState
from trader.venue_router import VenueRouter

__all__ = ["AlpacaRouter"]

log = logging.getLogger("tickpipe.trader")

SKEW_MARGIN_MS = 1000
ORDERS = "/v2/orders"
BY_CLIENT_ID = "/v2/orders:by_client_order_id"


class AlpacaRouter(VenueRouter):
    """The trader's requests to Alpaca's Trading API (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        rest: AlpacaRest,
        ledger: Ledger,
        *,
        clock: Callable[[], int],
        counts: dict[str, int],
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
    ) -> None:
        super().__init__(
            settings,
            ledger,
            clock=clock,
            counts=counts,
            status_attempts=status_attempts,
            retry_base_s=retry_base_s,
            recv_window_ms=recv_window_ms,
        )
        self.rest = rest

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any] | list[Any] | None:
        answer = await self.rest.request(method, path, query=query, body=body)
        return classify(answer.status, answer.body, answer.headers, now_s=self.clock() / 1e9)

    async def _order(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Call an endpoint that answers one order object; return it Binance-shaped."""
        found = await self._call(method, path, **kwargs)
        if not isinstance(found, dict):
            raise AmbiguousOutcome(f"{method} {path}: the answer holds no order")
        return order_result(found)

    # -- place -----------------------------------------------------------------------------------
    async def _send(self, signal: Signal, intent: OrderIntent) -> None:
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        body = order_body(intent)
        while True:
            sent_ns = self.clock()
            try:
                result = await self._order("POST", ORDERS, body=body)
            except VenueUnavailable as exc:  # never connected: certainly not sent
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

    # -- status ----------------------------------------------------------------------------------
    async def _lookup(self, intent: OrderIntent) -> dict[str, Any]:
        query = {"client_order_id": intent.client_order_id}
        return await self._order("GET", BY_CLIENT_ID, query=query)

    async def _resolve(self, intent: OrderIntent, *, source: str) -> OrderState | None:
        """Query the order by client id; "not found" settles it once no copy can arrive."""
        backoff = Backoff(base_s=self.retry_base_s, cap_s=2.0)
        unknown = 0
        last = "no answer"
        while True:
            try:
                result = await self._lookup(intent)
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
    async def _cancel(self, intent: OrderIntent) -> None:
        """``DELETE /v2/orders/{id}``, then record the order as the venue shows it."""
        cid = intent.client_order_id
        state = await self.ledger.order_state(cid)
        order_id = state.order_id if state is not None else ""
        for _ in range(self.status_attempts):
            try:
                if not order_id:  # never acknowledged here: learn the venue's id first
                    order_id = str((await self._lookup(intent)).get("orderId", ""))
                await self._call("DELETE", f"{ORDERS}/{order_id}")
                result = await self._lookup(intent)
            except RateLimited as exc:
                self.counts["rate_limited"] += 1
                await asyncio.sleep(min(max(exc.retry_after_s, 0.1), 60.0))
                continue
            except VenueUnavailable:
                await asyncio.sleep(self.retry_base_s)
                continue
            except (OrderNotFound, AmbiguousOutcome, DuplicateOrder, OrderRejected) as exc:
                # 404/422: not open any more (filled first?); else unclear: ask what it is now.
                log.info(
                    "cancel unclear, querying", extra={"client_order_id": cid, "error": str(exc)}
                )
                await self._resolve(intent, source="cancel")
                return
            await self.ledger.record_result(intent, result, source="cancel", event="canceled")
            self.counts["cancels"] += 1
            return

    # -- reconcile -------------------------------------------------------------------------------
    async def _open_at_venue(self) -> dict[str, dict[str, Any]] | None:
        """List ``GET /v2/orders?status=open`` (``None`` if that fails)."""
        try:
            listed = await self._call(
                "GET", ORDERS, query={"status": "open", "limit": "500", "direction": "asc"}
            )
        except (
            OrderRejected,
            OrderNotFound,
            AmbiguousOutcome,
            VenueUnavailable,
            RateLimited,
        ) as exc:
            log.warning("open orders not listed; querying each", extra={"error": str(exc)})
            return None
        if not isinstance(listed, list):
            return None
        orders = [order_result(o) for o in listed if isinstance(o, dict)]
        return {o["clientOrderId"]: o for o in orders}
