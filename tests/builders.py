"""Builders of the records tests feed the stages: one place to say what a plain signal is."""

from __future__ import annotations

import time
from typing import Any

from tickpipe.common.schema import Signal

__all__ = ["build_signal"]


def build_signal(**fields: Any) -> Signal:
    """Return a signal to buy 0.001 BTCUSDT at 61800.5 on Binance, stamped now.

    Any field can be given; a test names the ones its assertions depend on.
    """
    now = time.time_ns()
    values: dict[str, Any] = {
        "signal_id": "threshold:BTCUSDT:1",
        "venue": "binance",
        "symbol": "BTCUSDT",
        "strategy": "threshold",
        "action": "place",
        "side": "buy",
        "qty": "0.001",
        "price": "61800.5",
        "reason": "test",
        "cause": "1-0",
        "ts_event": now,
        "ts_recv": now,
        "ts_signal": now,
    }
    values.update(fields)
    return Signal(**values)
