"""Derive and compare order intents (pure: no I/O, time passed in as integer nanoseconds).

* :func:`build_intent` turns a signal into the :class:`~common.schema.OrderIntent` that is recorded
  before anything is sent; its client order id is derived from the signal id, so the same signal
  always maps to the same venue order.
* :func:`intent_mismatch` says how a signal's intent differs from one already recorded under
  the same client order id (a loud error, never "already sent").
* :func:`is_own_client_order_id` tells this pipeline's client order ids from anyone else's;
  :func:`adopted_intent` rebuilds the intent of such an order found at the venue with no record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tickpipe.common.order_spec import LIMIT_PRICED
from tickpipe.common.schema import OrderIntent, Signal, order_terms
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.positions import qty_text
from tickpipe.trader.risk import to_decimal

__all__ = [
    "adopted_intent",
    "build_intent",
    "intent_mismatch",
    "is_own_client_order_id",
    "replaced_client_order_id",
]


def build_intent(signal: Signal, *, ts_intent: int, order_type: str = "MARKET") -> OrderIntent:
    """Build the intent for ``signal``; its id is derived from the signal id.

    The signal's own order type wins over ``order_type`` (the deployment's default). A ``LIMIT``
    or ``STOP_LIMIT`` intent is priced at the signal's price, good till cancelled unless the
    signal names another time in force; a stop intent carries the signal's ``stop_price``, a
    quote-quantity MARKET intent its ``quote_qty``; :func:`common.order_spec.order_problem` says
    whether the result is valid.
    """
    kind = signal.order_type or order_type
    limit = kind in LIMIT_PRICED
    terms = order_terms(signal) | {
        "order_type": kind,
        "time_in_force": (signal.time_in_force or "GTC") if limit else signal.time_in_force,
        "replaces": replaced_client_order_id(signal.replaces) if signal.replaces else "",
    }
    return OrderIntent(
        client_order_id=client_order_id_for(signal.signal_id),
        signal_id=signal.signal_id,
        venue=signal.venue,
        symbol=signal.symbol,
        side=signal.side,
        qty=signal.qty,
        price=signal.price if limit and signal.price else None,
        ts_signal=signal.ts_signal,
        ts_intent=ts_intent,
        strategy=signal.strategy,
        **terms,
    )


#: The client order ids :func:`common.units.client_order_id_for` makes: ``tp-`` + 32 hex digits.
_OWN_ID = re.compile(r"tp-[0-9a-f]{32}")


def is_own_client_order_id(client_order_id: str) -> bool:
    """Tell whether ``client_order_id`` is one this pipeline derives from a signal id."""
    return _OWN_ID.fullmatch(client_order_id) is not None


def replaced_client_order_id(replaces: str) -> str:
    """Return the client order id a signal's ``replaces`` names (itself, or its signal id's)."""
    return replaces if is_own_client_order_id(replaces) else client_order_id_for(replaces)


def _same_number(a: str | None, b: str | None) -> bool:
    x, y = to_decimal(a), to_decimal(b)
    return x == y if x is not None and y is not None else a == b


def intent_mismatch(stored: OrderIntent, wanted: OrderIntent) -> str | None:
    """Return how ``wanted`` differs from the ``stored`` intent of its client order id, or None.

    Symbol, side, quantity and quote quantity must agree, and the limit and stop prices where
    both intents have one; numbers are compared as decimals (``0.0010`` is ``0.001``).
    """
    differences = []
    if stored.symbol != wanted.symbol:
        differences.append(f"symbol {stored.symbol} != {wanted.symbol}")
    if stored.side.lower() != wanted.side.lower():
        differences.append(f"side {stored.side} != {wanted.side}")
    if not _same_number(stored.qty, wanted.qty):
        differences.append(f"qty {stored.qty or '-'} != {wanted.qty or '-'}")
    if not _same_number(stored.quote_qty, wanted.quote_qty):
        differences.append(f"quote_qty {stored.quote_qty or '-'} != {wanted.quote_qty or '-'}")
    if stored.price and wanted.price and not _same_number(stored.price, wanted.price):
        differences.append(f"price {stored.price} != {wanted.price}")
    if (
        stored.stop_price
        and wanted.stop_price
        and not _same_number(stored.stop_price, wanted.stop_price)
    ):
        differences.append(f"stop_price {stored.stop_price} != {wanted.stop_price}")
    return ", ".join(differences) or None


def adopted_intent(order: Mapping[str, Any], *, venue: str, ts_intent: int) -> OrderIntent:
    """Rebuild the intent of a venue order (Binance-shaped dict) that has no record here.

    The signal id is unknown (empty): only the client order id, derived from it, survived.
    """
    order_type = str(order.get("type") or "MARKET").upper()
    qty = to_decimal(str(order.get("origQty", "")))
    price = to_decimal(str(order.get("price", "")))
    return OrderIntent(
        client_order_id=str(order.get("clientOrderId", "")),
        signal_id="",
        venue=venue,
        symbol=str(order.get("symbol", "")),
        side=str(order.get("side", "")).lower(),
        order_type=order_type,
        qty=qty_text(qty) if qty is not None else str(order.get("origQty", "")),
        price=qty_text(price) if order_type == "LIMIT" and price and price > Decimal(0) else None,
        ts_signal=0,
        ts_intent=ts_intent,
    )
