"""Turn Binance's user-data frames into order updates (pure, no I/O).

``executionReport`` events become :class:`common.schema.OrderUpdate`, identified by their
execution id ``I``; request replies and other account events (``outboundAccountPosition``,
``balanceUpdate``, ``listStatus``...) are named for the caller's counters.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import DecodeError
from common.schema import OrderUpdate, RawFrame
from venues.binance import wire as binance

__all__ = ["parse_private"]


def parse_private(frame: RawFrame) -> tuple[OrderUpdate, int | None] | str:
    """Classify a user-data frame: an order update and its execution id, or a counter's name."""
    if frame.kind != "ws":
        raise DecodeError(f"unexpected raw frame kind {frame.kind!r} on the private stream")
    _, payload = binance.unwrap(frame.data)
    if binance.is_reply(payload):
        return "replies"
    if not isinstance(payload, Mapping) or "e" not in payload:
        raise DecodeError("unrecognised private frame: neither an event nor a reply")
    if payload["e"] != "executionReport":
        return "ignored"
    execution_id = payload.get("I")
    if execution_id is not None and (
        not isinstance(execution_id, int) or isinstance(execution_id, bool)
    ):
        raise DecodeError(f"executionReport execution id must be an integer: {execution_id!r}")
    try:
        return binance.parse_execution_report(payload, ts_recv=frame.ts_recv), execution_id
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"executionReport is invalid: {exc!r}") from exc
