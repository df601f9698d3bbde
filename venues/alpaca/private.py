"""Turn Alpaca's trading-stream frames into order updates (pure, no I/O).

``{"stream":"trade_updates","data":..}`` (JSON or base64 msgpack) maps to
:class:`common.schema.OrderUpdate` (:func:`venues.alpaca.wire.parse_trade_update`); an update is
identified by its ``execution_id``, else by order id, event and timestamp. ``authorization`` and
``listening`` frames count as replies.
"""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import DecodeError
from common.schema import OrderUpdate, RawFrame
from venues.alpaca import wire as alpaca

__all__ = ["parse_private"]


def parse_private(frame: RawFrame) -> tuple[OrderUpdate, str | None] | str:
    """Classify a trading-stream frame: ``trade_updates`` -> update and its identity."""
    payload = alpaca.decode_payload(frame.kind, frame.data)
    if not isinstance(payload, Mapping):
        raise DecodeError("Alpaca trading frame must be an object")
    stream = payload.get("stream")
    if stream in ("authorization", "listening") or payload.get("action") == "error":
        return "replies"
    if stream != "trade_updates":
        if stream is None:
            raise DecodeError("unrecognised Alpaca trading frame: no stream")
        return "ignored"
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise DecodeError("trade update data must be an object")
    update = alpaca.parse_trade_update(data, ts_recv=frame.ts_recv)
    return update, "alpaca|" + alpaca.trade_update_key(data)
