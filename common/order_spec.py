"""Check the order type a signal asks for: type, time in force, post-only (pure, no I/O).

A signal (and the :class:`~processor.strategies.SignalSpec` a strategy returns) may name its own
order: ``order_type`` ``MARKET`` or ``LIMIT``, ``time_in_force`` ``GTC``, ``IOC`` or ``FOK`` (a
LIMIT order only; empty means ``GTC``), and ``post_only`` (a LIMIT order that must rest on the
book and is refused rather than matched at once: Binance ``LIMIT_MAKER``). An empty
``order_type`` means the deployment's ``TICKPIPE_ORDER_TYPE``. :func:`order_problem` is the one
check, run where a strategy's answer becomes a signal and again where the trader reads it; each
venue's order adapter then maps the checked order or refuses, with a reason, what the venue
cannot do (``order_refusal`` of :mod:`venues.binance.orders`, :mod:`venues.alpaca.orders`).
"""

from __future__ import annotations

from tickpipe.common.decimals import finite_decimal

__all__ = [
    "FOK",
    "GTC",
    "IOC",
    "LIMIT",
    "MARKET",
    "ORDER_TYPES",
    "TIMES_IN_FORCE",
    "order_problem",
]

MARKET = "MARKET"
LIMIT = "LIMIT"
ORDER_TYPES = (MARKET, LIMIT)
GTC = "GTC"
IOC = "IOC"
FOK = "FOK"
TIMES_IN_FORCE = (GTC, IOC, FOK)


def _positive(text: str) -> bool:
    value = finite_decimal(text)
    return value is not None and value > 0


def order_problem(order_type: str, time_in_force: str, post_only: bool, price: str) -> str | None:
    """Return what is wrong with this order's type and parameters, or ``None``.

    ``order_type`` is the resolved type (not empty). The message names the field and the values
    it may take, so a strategy author can fix it from the log line alone.
    """
    if order_type not in ORDER_TYPES:
        return f"order_type {order_type!r} is not one of {', '.join(ORDER_TYPES)}"
    if time_in_force and time_in_force not in TIMES_IN_FORCE:
        return f"time_in_force {time_in_force!r} is not one of {', '.join(TIMES_IN_FORCE)}"
    if order_type == MARKET:
        if time_in_force:
            return f"a MARKET order takes no time_in_force (got {time_in_force})"
        if post_only:
            return "a MARKET order cannot be post_only"
        return None
    if not _positive(price):
        return f"a LIMIT order needs a positive limit price, got {price!r}"
    if post_only and time_in_force not in ("", GTC):
        return (
            f"a post_only order rests on the book: time_in_force must be GTC, not {time_in_force}"
        )
    return None
