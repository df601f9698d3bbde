"""Send, look up, cancel and list orders over Binance's WebSocket API: the trader's adapter.

The trader's one router (:class:`trader.venue_router.VenueRouter`) does the retries, the
resolution of unclear outcomes, in-flight bookkeeping, cancel pacing, reconciliation and
recording; this adapter only speaks the venue's requests. Alpaca's REST counterpart is
:mod:`venues.alpaca.order_adapter`.

At most one order per intent: ``order.place`` requests of one intent are all signed with the
intent's own timestamp, so the venue refuses any of them that arrives later than the receive
window (``recvWindow``) after the intent was made. An ambiguous outcome (an answer not come
within that window and its margin for clock skew, a lost connection) is resolved by
``order.status``; "no such order" is conclusive once the window and margin have passed, since no
copy of the request can be accepted any more. The trader's core then places
the decision again, once, with the time it does so as the intent's (``TraderCore.on_lookup``).

Every stamp is local time plus the venue's clock offset as the connection estimates it
(``clock_offset_ns``, see :mod:`venues.binance.ws_api`), so a host clock that is off does not
get requests refused with ``-1021``.
"""

from __future__ import annotations

import asyncio
from dataclasses import KW_ONLY, dataclass
from typing import Any

from tickpipe.common.errors import (
    AmbiguousOutcome,
    VenueUnavailable,
)
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.schema import OrderIntent
from tickpipe.common.settings import Settings
from tickpipe.common.units import MS
from tickpipe.common.venue_clock import SKEW_MARGIN_MS
from tickpipe.venues.adapters import Request, VenueOrders
from tickpipe.venues.binance.instruments import EXCHANGE_INFO_PATH, filters_of_exchange_info
from tickpipe.venues.binance.orders import (
    SignOptions,
    all_orders_params,
    cancel_params,
    list_result_of,
    open_orders_params,
    order_refusal,
    place_params,
    result_of,
    status_params,
    venue_order_type,
)
from tickpipe.venues.binance.signing import Signer
from tickpipe.venues.binance.ws_api import Venue

__all__ = ["BinanceOrders"]

#: ``allOrders`` answers at most this many orders; a full page asks for the next one.
PAGE = 1000
MAX_PAGES = 50


@dataclass(eq=False)
class BinanceOrders(VenueOrders):
    """The trader's requests to the venue, one method per kind of request."""

    settings: Settings
    venue: Venue
    _: KW_ONLY
    recv_window_ms: int
    #: Signs a request payload (``None``: HMAC with the API secret).
    signer: Signer | None = None
    #: The connection is logged on: requests carry no signature.
    session: bool = False

    def _offset_ns(self) -> int:
        """Return the venue's clock minus ours, if the connection estimates it (else 0)."""
        offset = getattr(self.venue, "clock_offset_ns", 0)
        return offset if isinstance(offset, int) else 0

    def _now_ms(self) -> int:
        return (self.clock() + self._offset_ns()) // MS

    def _auth(self) -> SignOptions:
        return {
            "api_key": self.settings.binance_api_key.reveal(),
            "api_secret": self.settings.binance_api_secret.reveal(),
            "recv_window_ms": self.recv_window_ms,
            "signer": self.signer,
            "session": self.session,
        }

    # -- order types and filters -----------------------------------------------------------------
    def order_refusal(self, intent: OrderIntent) -> str | None:
        """Why the venue cannot take ``intent`` as it is (:func:`orders.order_refusal`)."""
        return order_refusal(intent)

    def venue_order_type(self, intent: OrderIntent) -> str:
        """The venue's name of the intent's type (``LIMIT_MAKER`` for a post-only LIMIT)."""
        return venue_order_type(intent)

    async def instruments(self, symbols: list[str]) -> dict[str, InstrumentFilters]:
        """Load the symbols' filters with ``GET /api/v3/exchangeInfo?symbols=[...]``."""
        import aiohttp  # I/O: only the trader loads filters
        import orjson

        from tickpipe.common.tls import http_connector

        url = self.settings.binance_rest_url.rstrip("/") + EXCHANGE_INFO_PATH
        query = {"symbols": orjson.dumps(sorted(symbols)).decode()}
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with (
                # The process's TLS context: it trusts TICKPIPE_CA_FILE (the mock's CA) too.
                aiohttp.ClientSession(timeout=timeout, connector=http_connector()) as http,
                http.get(url, params=query) as answer,
            ):
                body = orjson.loads(await answer.read() or b"null")
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise VenueUnavailable(f"exchangeInfo: {exc!r}") from exc
        if status != 200:
            raise VenueUnavailable(f"exchangeInfo answered HTTP {status}: {str(body)[:200]}")
        return filters_of_exchange_info(body)

    # -- place -----------------------------------------------------------------------------------
    def placer(self, intent: OrderIntent) -> Request:
        # Every copy carries the intent's time: the venue refuses one that arrives too late.
        stamp_ms = (intent.ts_intent + self._offset_ns()) // MS
        params = place_params(intent, timestamp_ms=stamp_ms, **self._auth())

        # Past the receive window and its margin after the stamp no copy can be accepted, so a
        # lookup then settles what became of it: waiting longer for an answer only ages the
        # decision (the trader places one the venue never got while it is still fresh).
        deadline_s = (self.recv_window_ms + SKEW_MARGIN_MS) / 1000

        async def place() -> dict[str, Any]:
            try:
                answer = await asyncio.wait_for(self.venue.place(params), deadline_s)
            except TimeoutError:
                raise AmbiguousOutcome(
                    f"order.place: no answer within {deadline_s:g} s (the receive window)"
                ) from None
            return result_of(answer, now_ms=self._now_ms())

        return place

    # -- status ----------------------------------------------------------------------------------
    async def lookup(self, intent: OrderIntent) -> dict[str, Any]:
        """Query ``order.status`` by the client order id."""
        params = status_params(
            intent.symbol, intent.client_order_id, timestamp_ms=self._now_ms(), **self._auth()
        )
        return result_of(await self.venue.status(params), now_ms=self._now_ms())

    # -- cancel ----------------------------------------------------------------------------------
    async def canceller(self, intent: OrderIntent) -> Request:
        """Return the ``order.cancel`` request, signed afresh on every try."""

        async def cancel() -> dict[str, Any]:
            params = cancel_params(
                intent.symbol, intent.client_order_id, timestamp_ms=self._now_ms(), **self._auth()
            )
            return result_of(await self.venue.cancel(params), now_ms=self._now_ms())

        return cancel

    # -- reconcile -------------------------------------------------------------------------------
    async def list_open(self) -> list[dict[str, Any]] | None:
        """List the open orders with ``openOrders.status``."""
        params = open_orders_params(timestamp_ms=self._now_ms(), **self._auth())
        listed = list_result_of(await self.venue.open_orders(params), now_ms=self._now_ms())
        return [o for o in listed if isinstance(o, dict)]

    async def list_recent(self, since_ms: int) -> list[dict[str, Any]] | None:
        """List each symbol's orders since ``since_ms`` with ``allOrders``, page by page."""
        out: list[dict[str, Any]] = []
        for symbol in self.settings.symbols:
            from_id: int | None = None
            for _ in range(MAX_PAGES):
                params = all_orders_params(
                    symbol,
                    timestamp_ms=self._now_ms(),
                    start_ms=since_ms,
                    from_order_id=from_id,
                    limit=PAGE,
                    **self._auth(),
                )
                answer = await self.venue.all_orders(params)
                page = [
                    o for o in list_result_of(answer, now_ms=self._now_ms()) if isinstance(o, dict)
                ]
                out += page
                ids = [o["orderId"] for o in page if isinstance(o.get("orderId"), int)]
                if len(page) < PAGE or not ids:
                    break
                from_id = max(ids) + 1
        return out
