"""Send, look up, cancel and list Alpaca orders over REST: the trader's adapter.

At most one order per intent: the order is ``POST /v2/orders`` once, with the intent's client
order id, which Alpaca keeps unique for ever. A 422 "client_order_id must be unique" therefore
means the order exists, and a timeout, a dropped connection or a 5xx means it may exist: both are
resolved by ``GET /v2/orders:by_client_order_id`` only, never by sending again. "No such order" is
final once ``recv_window_ms`` (plus a margin) has passed since the intent, time enough for any
copy of the request still on its way; a later copy would show up at reconciliation as an open
order settled here. An intent that replaces a working LIMIT order in place (``in_place``) is sent as
``PATCH /v2/orders/{id}`` of that order, with the intent's own client order id: Alpaca ends the
old order (``replaced``) and answers the new one, so the two never both work; the same
lookups settle an unclear answer. Cancel is ``DELETE /v2/orders/{id}``; reconciliation lists
``GET /v2/orders?status=open``, and ``GET /v2/orders?status=all&after=...`` for the orders to
adopt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tickpipe.common.errors import (
    AmbiguousOutcome,
    OrderNotFound,
    OrderRejected,
    VenueUnavailable,
)
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.schema import OrderIntent
from tickpipe.common.units import MS
from tickpipe.venues.adapters import Request, RestOrders
from tickpipe.venues.alpaca.instruments import ASSETS_PATH, filters_of_asset
from tickpipe.venues.alpaca.orders import (
    classify,
    order_body,
    order_refusal,
    order_result,
    replace_body,
)
from tickpipe.venues.alpaca.rest import AlpacaRest
from tickpipe.venues.alpaca.wire import rfc3339

__all__ = ["AlpacaOrders"]

ORDERS = "/v2/orders"
BY_CLIENT_ID = "/v2/orders:by_client_order_id"
#: ``GET /v2/orders`` answers at most this many orders; a full page asks for older ones.
PAGE = 500
MAX_PAGES = 50


@dataclass(eq=False)
class AlpacaOrders(RestOrders):
    """The trader's requests to Alpaca's Trading API (see the module docstring)."""

    #: The order types Alpaca replaces in one step (``PATCH``); others are cancelled, then placed.
    replaces_in_place = frozenset({"LIMIT"})

    rest: AlpacaRest

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

    # -- order types and filters -----------------------------------------------------------------
    def order_refusal(self, intent: OrderIntent) -> str | None:
        """Why Alpaca cannot take ``intent`` as it is (:func:`orders.order_refusal`)."""
        return order_refusal(intent)

    def venue_order_type(self, intent: OrderIntent) -> str:
        """The intent's type as the filters name it (MARKET, LIMIT, STOP, STOP_LIMIT)."""
        return intent.order_type

    async def instruments(self, symbols: list[str]) -> dict[str, InstrumentFilters]:
        """Load each symbol's filters from ``GET /v2/assets/{symbol}``; unknown ones left out."""
        out: dict[str, InstrumentFilters] = {}
        for symbol in symbols:
            try:
                asset = await self._call("GET", ASSETS_PATH + quote(symbol, safe=""))
            except OrderNotFound:
                continue  # no asset of that name (or a venue without the endpoint)
            except (OrderRejected, AmbiguousOutcome) as exc:
                raise VenueUnavailable(f"asset {symbol}: {exc}") from exc
            out[symbol] = filters_of_asset(symbol, asset)
        return out

    # -- place -----------------------------------------------------------------------------------
    def placer(self, intent: OrderIntent, *, time_in_force: str | None = None) -> Request:
        """``POST /v2/orders`` of ``intent`` (``time_in_force``: the embeddable client's choice,
        ``day``, ``gtc``, ``ioc``...; default :func:`orders.order_body`'s)."""
        if intent.in_place:
            return self._replacer(intent)
        body = order_body(intent)
        if time_in_force:
            body["time_in_force"] = time_in_force.lower()

        async def place() -> dict[str, Any]:
            return await self._order("POST", ORDERS, body=body)

        return place

    def _replacer(self, intent: OrderIntent) -> Request:
        """``PATCH /v2/orders/{id}`` of the order ``intent`` replaces, with its new terms."""
        body = replace_body(intent)

        async def replace() -> dict[str, Any]:
            order_id = await self.order_id_of(intent.replaces)
            if not order_id:  # never acknowledged here: learn the venue's id first
                old = await self._order("GET", BY_CLIENT_ID,
                                        query={"client_order_id": intent.replaces})  # fmt: skip
                order_id = str(old.get("orderId", ""))
            return await self._order("PATCH", f"{ORDERS}/{order_id}", body=body)

        return replace

    # -- status ----------------------------------------------------------------------------------
    async def lookup(self, intent: OrderIntent) -> dict[str, Any]:
        query = {"client_order_id": intent.client_order_id}
        return await self._order("GET", BY_CLIENT_ID, query=query)

    # -- cancel ----------------------------------------------------------------------------------
    async def canceller(self, intent: OrderIntent) -> Request:
        """``DELETE /v2/orders/{id}``, then look the order up to record it as the venue shows it."""
        order_id = await self.order_id_of(intent.client_order_id)

        async def cancel() -> dict[str, Any]:
            nonlocal order_id
            if not order_id:  # never acknowledged here: learn the venue's id first
                order_id = str((await self.lookup(intent)).get("orderId", ""))
            await self._call("DELETE", f"{ORDERS}/{order_id}")
            return await self.lookup(intent)

        return cancel

    # -- reconcile -------------------------------------------------------------------------------
    async def list_open(self) -> list[dict[str, Any]] | None:
        """List ``GET /v2/orders?status=open``."""
        listed = await self._call(
            "GET", ORDERS, query={"status": "open", "limit": "500", "direction": "asc"}
        )
        if not isinstance(listed, list):
            return None
        return [order_result(o) for o in listed if isinstance(o, dict)]

    async def list_recent(self, since_ms: int) -> list[dict[str, Any]] | None:
        """List ``GET /v2/orders?status=all&after=...``, newest first, page by page."""
        out: dict[str, dict[str, Any]] = {}
        until = ""
        for _ in range(MAX_PAGES):
            query = {"status": "all", "limit": str(PAGE), "direction": "desc",
                     "after": rfc3339(since_ms * MS)}  # fmt: skip
            if until:
                query["until"] = until
            listed = await self._call("GET", ORDERS, query=query)
            if not isinstance(listed, list):
                return None if not out else list(out.values())
            page = [o for o in listed if isinstance(o, dict)]
            fresh = [o for o in page if str(o.get("id")) not in out]
            for order in fresh:
                out[str(order.get("id"))] = order_result(order)
            oldest = min((str(o.get("submitted_at") or "") for o in page), default="")
            if len(page) < PAGE or not fresh or not oldest:
                break
            until = oldest
        return list(out.values())
