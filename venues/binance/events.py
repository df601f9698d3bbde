"""Turn Binance frames into typed values for the embeddable client (pure: no I/O, no clock).

Handles combined-stream ``trade``, ``bookTicker``, ``depthUpdate`` (a :class:`DepthDiff` for the
client's book) and ``kline`` frames and user-data ``executionReport`` events; everything else
(replies, other channels, account updates) gives ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import DepthDiff
from tickpipe.common.schema import Bar, Event, Quote
from tickpipe.common.units import MS
from tickpipe.venues.binance.marketdata import parse_depth_diff
from tickpipe.venues.binance.wire import parse_execution_report, parse_trade, unwrap

__all__ = ["normalise", "parse_book_ticker", "parse_kline"]


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise DecodeError(f"field {key!r} must be a decimal string, got {value!r}")
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


def parse_kline(data: Mapping[str, Any]) -> Bar:
    """Convert a ``kline`` payload into a :class:`Bar` (``final`` once the venue closed it)."""
    k = data.get("k")
    if not isinstance(k, Mapping):
        raise DecodeError("kline payload has no k object")
    try:
        return Bar(
            venue="binance",
            symbol=str(k["s"]),
            interval=str(k["i"]),
            ts_open=int(k["t"]) * MS,
            open=_text(k, "o"),
            high=_text(k, "h"),
            low=_text(k, "l"),
            close=_text(k, "c"),
            volume=_text(k, "v"),
            trades=int(k["n"]),
            first_trade_id=str(k["f"]),
            last_trade_id=str(k["L"]),
            final=bool(k["x"]),
            ts_event=int(data["E"]) * MS,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"kline field missing or invalid: {exc}") from None


def normalise(frame: str | bytes, *, ts_recv: int) -> Event | DepthDiff | None:
    """Return the value a frame carries, or ``None``; raise :class:`DecodeError` if malformed."""
    stream, payload = unwrap(frame)
    if not isinstance(payload, Mapping):
        return None
    kind = payload.get("e")
    if kind == "depthUpdate":
        return parse_depth_diff(payload, ts_recv=ts_recv, entry_id=stream or "")
    if kind == "kline":
        return parse_kline(payload)
    if kind == "trade":
        return parse_trade(payload, ts_recv=ts_recv, src=stream or "")
    if kind == "executionReport":
        return parse_execution_report(payload, ts_recv=ts_recv)
    if (stream is not None and stream.endswith("@bookTicker")) or (
        kind is None and "u" in payload and "b" in payload and "a" in payload
    ):
        return parse_book_ticker(payload, ts_recv=ts_recv)
    return None
