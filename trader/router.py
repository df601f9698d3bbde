"""Send, look up and cancel orders over Binance's WebSocket API; record every outcome.

The shared parts (in-flight bookkeeping, cancel pacing, reconciliation) are in
:mod:`trader.venue_router`; Alpaca's REST counterpart is :mod:`trader.alpaca_router`.

At most one order per intent: ``order.place`` requests of one intent are all signed with the
intent's own timestamp, so the venue refuses any of them that arrives later than the receive
window (``recvWindow``) after the intent was made. An ambiguous outcome is resolved by
``order.status`` only; "no such order" is final once that window (plus a margin for clock skew)
has passed, since no copy of the request can be accepted any more.
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
from trader.orders import OrderState
from trader.signing import Signer
from trader.venue_router import VenueRouter

__all__ = ["Router"]

log = logging.getLogger("tickpipe.trader")

SKEW_MARGIN_MS = 1000


class Router(VenueRouter):
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
        super().__init__(
            settings,
            ledger,
            clock=clock,
            counts=counts,
            status_attempts=status_attempts,
            retry_base_s=retry_base_s,
            recv_window_ms=recv_window_ms,
        )
        self.signer = signer  # None: HMAC with the API secret
        self.session = session  # the connection is logged on: requests carry no signature
        self.venue = venue

    def _auth(self) -> dict[str, Any]:
        return {
            "api_key": self.settings.binance_api_key.reveal(),
            "api_secret": self.settings.binance_api_secret.reveal(),
            "recv_window_ms": self.recv_window_ms,
            "signer": self.signer,
            "session": self.session,
        }

    # -- place -----------------------------------------------------------------------------------
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

    # -- status ----------------------------------------------------------------------------------
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
    async def _cancel(self, intent: OrderIntent) -> None:
        """Send ``order.cancel``; an unclear answer is settled by ``order.status``."""
        client_order_id = intent.client_order_id
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

    # -- reconcile -------------------------------------------------------------------------------
    async def _open_at_venue(self) -> dict[str, dict[str, Any]] | None:
        """List the open orders with ``openOrders.status`` (``None`` if that fails)."""
        try:
            params = open_orders_params(timestamp_ms=self._now_ms(), **self._auth())
            listed = list_result_of(await self.venue.open_orders(params), now_ms=self._now_ms())
        except (OrderRejected, AmbiguousOutcome, VenueUnavailable, RateLimited) as exc:
            log.warning("open orders not listed; querying each", extra={"error": str(exc)})
            return None
        return {str(o.get("clientOrderId")): o for o in listed if isinstance(o, dict)}
