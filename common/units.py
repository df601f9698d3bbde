"""Name the units and identifiers every stage and venue shares (pure, no I/O)."""

from __future__ import annotations

import hashlib

__all__ = ["MS", "NS_PER_S", "client_order_id_for"]

MS = 1_000_000  # nanoseconds per millisecond
NS_PER_S = 1_000_000_000  # nanoseconds per second


def client_order_id_for(signal_id: str) -> str:
    """Derive the client order id (<= 36 chars, ``[A-Za-z0-9_-]``) of one signal's order.

    Binance's ``newClientOrderId`` and Alpaca's ``client_order_id`` both accept this shape, so
    one signal has the same id at every venue.
    """
    return "tp-" + hashlib.sha256(signal_id.encode()).hexdigest()[:32]
