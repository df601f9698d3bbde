"""Builders of the records tests feed the stages: a trade, signal, order intent, order update."""

from __future__ import annotations

import time
from typing import Any

from tickpipe.common.schema import OrderIntent, OrderUpdate, Signal, Trade

__all__ = ["build_order_intent", "build_order_update", "build_signal", "build_trade"]

# Trade 1 of BTCUSDT on Binance: 1 at 61800.5, the buyer the aggressor.
TRADE: dict[str, Any] = {
    "venue": "binance", "symbol": "BTCUSDT", "trade_id": "1", "price": "61800.5", "qty": "1",
    "side": "buy",
}  # fmt: skip

# A buy of 0.001 BTCUSDT at 61800.5 on Binance, as a threshold strategy decides it.
SIGNAL: dict[str, Any] = {
    "signal_id": "threshold:BTCUSDT:1", "venue": "binance", "symbol": "BTCUSDT",
    "strategy": "threshold", "action": "place", "side": "buy", "qty": "0.001",
    "price": "61800.5", "reason": "test", "cause": "1-0",
}  # fmt: skip

# The trader's market order for it, before it is sent.
ORDER_INTENT: dict[str, Any] = {
    "client_order_id": "tp-1", "signal_id": "threshold:BTCUSDT:1", "venue": "binance",
    "symbol": "BTCUSDT", "side": "buy", "order_type": "MARKET", "qty": "0.001", "price": None,
}  # fmt: skip

# Its market order filled at once at 61800.
ORDER_UPDATE: dict[str, Any] = {
    "venue": "binance", "symbol": "BTCUSDT", "client_order_id": "tp-1", "order_id": "1",
    "side": "buy", "order_type": "MARKET", "status": "FILLED", "exec_type": "TRADE",
    "qty": "0.001", "price": "0", "filled_qty": "0.001", "last_qty": "0.001",
    "last_price": "61800", "cum_quote": "61.8", "trade_id": "1",
}  # fmt: skip


def build_trade(**fields: Any) -> Trade:
    """Return :data:`TRADE` stamped now; a test names the fields its assertions depend on."""
    now = time.time_ns()
    return Trade(**(TRADE | {"ts_event": now, "ts_recv": now} | fields))


def build_signal(**fields: Any) -> Signal:
    """Return :data:`SIGNAL` stamped now; a test names the fields its assertions depend on."""
    now = time.time_ns()
    return Signal(**(SIGNAL | {"ts_event": now, "ts_recv": now, "ts_signal": now} | fields))


def build_order_update(**fields: Any) -> OrderUpdate:
    """Return :data:`ORDER_UPDATE` stamped now; a test names the fields it depends on."""
    now = time.time_ns()
    return OrderUpdate(**(ORDER_UPDATE | {"ts_event": now, "ts_recv": now} | fields))


def build_order_intent(**fields: Any) -> OrderIntent:
    """Return :data:`ORDER_INTENT` stamped now; a test names the fields it depends on."""
    now = time.time_ns()
    return OrderIntent(**(ORDER_INTENT | {"ts_signal": now, "ts_intent": now} | fields))
