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

from typing import Any, Unpack

from common.errors import AmbiguousOutcome, RateLimited
from common.schema import OrderIntent
from common.settings import Settings
from trader.alpaca_core import classify, order_body, order_result
from trader.alpaca_rest import AlpacaRest
from trader.binance_ws_api import VenueUnavailable
from trader.core import DuplicateOrder, OrderNotFound, OrderRejected
from trader.ledger import Ledger
from trader.venue_router import Request, RouterOptions, VenueRouter

__all__ = ["AlpacaRouter"]

ORDERS = "/v2/orders"
BY_CLIENT_ID = "/v2/orders:by_client_order_id"


class AlpacaRouter(VenueRouter):
    """The trader's requests to Alpaca's Trading API (see the module docstring)."""

    # 404/422 on cancel: not open any more (filled first?); else unclear: ask what it is now.
    cancel_unclear = (OrderNotFound, AmbiguousOutcome, DuplicateOrder, OrderRejected)
    list_failed = (OrderRejected, OrderNotFound, AmbiguousOutcome, VenueUnavailable, RateLimited)

    def __init__(
        self, settings: Settings, rest: AlpacaRest, ledger: Ledger, **options: Unpack[RouterOptions]
    ) -> None:
        super().__init__(settings, ledger, **options)
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
    def _placer(self, intent: OrderIntent) -> Request:
        body = order_body(intent)

        async def place() -> dict[str, Any]:
            return await self._order("POST", ORDERS, body=body)

        return place

    # -- status ----------------------------------------------------------------------------------
    async def _lookup(self, intent: OrderIntent) -> dict[str, Any]:
        query = {"client_order_id": intent.client_order_id}
        return await self._order("GET", BY_CLIENT_ID, query=query)

    # -- cancel ----------------------------------------------------------------------------------
    async def _canceller(self, intent: OrderIntent) -> Request:
        """``DELETE /v2/orders/{id}``, then look the order up to record it as the venue shows it."""
        state = await self.ledger.order_state(intent.client_order_id)
        order_id = state.order_id if state is not None else ""

        async def cancel() -> dict[str, Any]:
            nonlocal order_id
            if not order_id:  # never acknowledged here: learn the venue's id first
                order_id = str((await self._lookup(intent)).get("orderId", ""))
            await self._call("DELETE", f"{ORDERS}/{order_id}")
            return await self._lookup(intent)

        return cancel

    # -- reconcile -------------------------------------------------------------------------------
    async def _list_open(self) -> list[dict[str, Any]] | None:
        """List ``GET /v2/orders?status=open``."""
        listed = await self._call(
            "GET", ORDERS, query={"status": "open", "limit": "500", "direction": "asc"}
        )
        if not isinstance(listed, list):
            return None
        return [order_result(o) for o in listed if isinstance(o, dict)]
