"""Check the order a signal asks for: type, time in force, post-only, quote amount, stop (pure).

A signal (and the :class:`~processor.strategies.SignalSpec` a strategy returns) may name its own
order:

* ``order_type`` ``MARKET``, ``LIMIT``, ``STOP`` (stop-market: rests until the market trades
  through ``stop_price``, then executes as a market order) or ``STOP_LIMIT`` (then becomes a
  limit order at ``price``). A buy stop triggers when the last trade reaches ``stop_price`` from
  below, a sell stop from above. ``TAKE_PROFIT`` and ``TAKE_PROFIT_LIMIT`` are the same the
  other way round: a buy triggers when the price falls to ``stop_price``, a sell when it rises
  to it. An empty ``order_type`` means the deployment's ``TICKPIPE_ORDER_TYPE``.
* ``time_in_force`` ``GTC``, ``IOC`` or ``FOK`` (LIMIT and the ``_LIMIT`` stops only; empty
  means ``GTC``).
* ``post_only`` (a LIMIT order that must rest on the book and is refused rather than matched at
  once: Binance ``LIMIT_MAKER``).
* ``quote_qty``: a MARKET order that spends (buy) or receives (sell) this amount of the quote
  asset instead of a base ``qty`` (Binance ``quoteOrderQty``, Alpaca ``notional``); ``qty`` is
  then empty.
* ``stop_price``: the trigger of a stop or take-profit order (no other type takes one).

:func:`order_problem` is the one check, run where a strategy's answer becomes a signal and again
where the trader reads it; each venue's order adapter then maps the checked order or refuses,
with a reason, what the venue cannot do (``order_refusal`` of :mod:`venues.binance.orders`,
:mod:`venues.alpaca.orders`, :mod:`venues.ibkr.orders`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tickpipe.common.decimals import finite_decimal

if TYPE_CHECKING:
    from tickpipe.common.schema import OrderIntent, OrderTerms

__all__ = [
    "FOK",
    "GTC",
    "IOC",
    "LIMIT",
    "LIMIT_PRICED",
    "MARKET",
    "MARKET_LIKE",
    "ORDER_TYPES",
    "STOP",
    "STOP_LIMIT",
    "STOP_TYPES",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "TAKE_PROFIT_TYPES",
    "TIMES_IN_FORCE",
    "intent_problem",
    "order_problem",
    "terms_problem",
]

MARKET = "MARKET"
LIMIT = "LIMIT"
STOP = "STOP"
STOP_LIMIT = "STOP_LIMIT"
TAKE_PROFIT = "TAKE_PROFIT"
TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"
ORDER_TYPES = (MARKET, LIMIT, STOP, STOP_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT)
#: The types that trigger as the market moves towards the order's favour (the other way).
TAKE_PROFIT_TYPES = frozenset({TAKE_PROFIT, TAKE_PROFIT_LIMIT})
#: The types that rest untriggered until the market reaches their ``stop_price``.
STOP_TYPES = frozenset({STOP, STOP_LIMIT}) | TAKE_PROFIT_TYPES
#: The types that carry a limit price (and a time in force).
LIMIT_PRICED = frozenset({LIMIT, STOP_LIMIT, TAKE_PROFIT_LIMIT})
#: The types that execute as a market order (once triggered): no limit price, no time in force.
MARKET_LIKE = frozenset({MARKET, STOP, TAKE_PROFIT})
GTC = "GTC"
IOC = "IOC"
FOK = "FOK"
TIMES_IN_FORCE = (GTC, IOC, FOK)


def _positive(text: str) -> bool:
    value = finite_decimal(text)
    return value is not None and value > 0


def order_problem(
    order_type: str,
    time_in_force: str,
    post_only: bool,
    price: str,
    *,
    qty: str | None = None,
    quote_qty: str = "",
    stop_price: str = "",
) -> str | None:
    """Return what is wrong with this order's type and parameters, or ``None``.

    ``order_type`` is the resolved type (not empty); ``qty`` ``None`` leaves the base quantity
    unchecked (the risk check judges it). The message names the field and the values it may
    take, so a strategy author can fix it from the log line alone.
    """
    if order_type not in ORDER_TYPES:
        return f"order_type {order_type!r} is not one of {', '.join(ORDER_TYPES)}"
    if time_in_force and time_in_force not in TIMES_IN_FORCE:
        return f"time_in_force {time_in_force!r} is not one of {', '.join(TIMES_IN_FORCE)}"
    if quote_qty:
        if order_type != MARKET:
            return f"quote_qty is for MARKET orders only, not {order_type}"
        if not _positive(quote_qty):
            return f"quote_qty must be a positive amount of the quote asset, got {quote_qty!r}"
        if qty:
            return f"a quote_qty order names no qty (got qty {qty!r} and quote_qty {quote_qty!r})"
    if stop_price and order_type not in STOP_TYPES:
        return f"stop_price is for stop and take-profit orders only, not {order_type}"
    if order_type in STOP_TYPES and not _positive(stop_price):
        return f"a {order_type} order needs a positive stop_price, got {stop_price!r}"
    if order_type in MARKET_LIKE:
        if time_in_force:
            return f"a {order_type} order takes no time_in_force (got {time_in_force})"
        if post_only:
            return f"a {order_type} order cannot be post_only"
        if order_type != MARKET and price:
            return (
                f"a {order_type} order takes no limit price (got {price!r}): use {order_type}_LIMIT"
            )
        return None
    if not _positive(price):
        return f"a {order_type} order needs a positive limit price, got {price!r}"
    if order_type != LIMIT and post_only:
        return f"a {order_type} order cannot be post_only"
    if post_only and time_in_force not in ("", GTC):
        return (
            f"a post_only order rests on the book: time_in_force must be GTC, not {time_in_force}"
        )
    return None


def terms_problem(
    terms: OrderTerms | OrderIntent, price: str, *, qty: str | None = None, order_type: str = ""
) -> str | None:
    """Return :func:`order_problem` of the order ``terms`` name at ``price``, or ``None``.

    ``terms`` is a holder of :class:`common.schema.OrderTerms` (a signal or a strategy's spec)
    or an intent; ``order_type`` (the resolved type) stands in for the terms' own when given.
    """
    return order_problem(order_type or terms.order_type, terms.time_in_force, terms.post_only,
                         price, qty=qty, quote_qty=terms.quote_qty,
                         stop_price=terms.stop_price)  # fmt: skip


def intent_problem(intent: OrderIntent, venue: str) -> str | None:
    """Return :func:`order_problem` of ``intent``'s order, prefixed with ``venue``, or ``None``."""
    problem = terms_problem(intent, intent.price or "", qty=intent.qty)
    return f"{venue}: {problem}" if problem is not None else None
