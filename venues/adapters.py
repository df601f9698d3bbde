"""Declare once what the venues' order adapters hold: a clock, and the REST adapters' order ids.

Each venue's order adapter (:class:`~venues.binance.order_adapter.BinanceOrders`,
:class:`~venues.alpaca.order_adapter.AlpacaOrders`, :class:`~venues.ibkr.order_adapter.IbkrOrders`)
speaks the trader's requests to its venue (the router's ``OrderAdapter`` protocol in
:mod:`trader.venue_router`). They extend :class:`VenueOrders`, which holds ``clock`` (integer
ns: every stamp and freshness check reads it) and the error tuples the router reads (Binance's:
a cancel the venue refuses is final). The REST adapters (Alpaca, IBKR) extend
:class:`RestOrders`, which adds ``order_id_of`` (a cancel or a replace names the venue's order
id, recorded for the client order id) and widens the errors: a refused cancel (404/422: no
longer open) is looked up, and a listing answered 404 is queried order by order.

The fields declared here are keyword-only, so each adapter's own positional fields (its
connection, its settings) still open its constructor: ``AlpacaOrders(rest, clock=...,
order_id_of=...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from tickpipe.common.errors import (
    AmbiguousOutcome,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    VenueUnavailable,
)

__all__ = ["Request", "RestOrders", "VenueOrders"]

#: A request ready to send (every try sends the same one): answers a Binance-shaped order dict.
Request = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class VenueOrders:
    """What every venue's order adapter holds: the clock its stamps read."""

    #: Errors that make a cancel unclear (settled by a query); any other OrderRejected is final.
    cancel_unclear: ClassVar[tuple[type[Exception], ...]] = (
        OrderNotFound,
        AmbiguousOutcome,
        DuplicateOrder,
    )
    #: Errors on listing the open orders after which each working order is queried instead.
    list_failed: ClassVar[tuple[type[Exception], ...]] = (
        OrderRejected,
        AmbiguousOutcome,
        VenueUnavailable,
        RateLimited,
    )

    _: KW_ONLY
    #: Local time, integer ns.
    clock: Callable[[], int]


@dataclass(eq=False)
class RestOrders(VenueOrders):
    """An order adapter over REST (Alpaca, IBKR): orders are named by the venue's id."""

    # 404/422 on cancel: not open any more (filled first?); else unclear: ask what it is now.
    cancel_unclear = (*VenueOrders.cancel_unclear, OrderRejected)
    # a listing answered 404 is queried order by order too
    list_failed = (*VenueOrders.list_failed, OrderNotFound)

    _: KW_ONLY
    #: The venue's order id recorded for a client order id (``""``: none recorded yet).
    order_id_of: Callable[[str], Awaitable[str]]
