"""Turn Binance frames into normalised events for the embeddable client (pure: no I/O, no clock).

Handles combined-stream ``trade`` and ``bookTicker`` frames and user-data ``executionReport``
events; everything else (replies, other channels, account updates) gives ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.errors import DecodeError
from common.schema import Event, Quote
from common.units import MS
from venues.binance.wire import parse_execution_report, parse_trade, unwrap

__all__ = ["normalise", "parse_book_ticker"]


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise DecodeError(f"bookTicker field {key!r} must be a decimal string, got {value!r}")
    return value


def parse_book_ticker(data: Mapping[str, Any], *, ts_recv: int) -> Quote:
    """Convert a ``bookTicker`` payload into a :class:`Quote` (``ts_event`` = ``E`` if sent)."""
    if "u" not in data or "s" not in data:
        raise DecodeError("not a bookTicker payload")
    event_ms = data.get("E")
    return Quote(
        venue="binance",
        symbol=str(data["s"]),
        bid_price=_text(data, "b"),
        bid_qty=_text(data, "B"),
        ask_price=_text(data, "a"),
        ask_qty=_text(data, "A"),
        update_id=str(data["u"]),
        ts_event=event_ms * MS if isinstance(event_ms, int) else ts_recv,
        ts_recv=ts_recv,
    )


def normalise(frame: str | bytes, *, ts_recv: int) -> Event | None:
    """Return the event a frame carries, or ``None``; raise :class:`DecodeError` if malformed."""
    stream, payload = unwrap(frame)
    if not isinstance(payload, Mapping):
        return None
    kind = payload.get("e")
    if kind == "trade":
        return parse_trade(payload, ts_recv=ts_recv, src=stream or "")
    if kind == "executionReport":
        return parse_execution_report(payload, ts_recv=ts_recv)
    if (stream is not None and stream.endswith("@bookTicker")) or (
        kind is None and "u" in payload and "b" in payload and "a" in payload
    ):
        return parse_book_ticker(payload, ts_recv=ts_recv)
    return None
