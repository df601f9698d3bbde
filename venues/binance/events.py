"""Turn Binance frames into typed values for the embeddable client (pure: no I/O, no clock).

Handles combined-stream ``trade``, ``bookTicker``, ``depthUpdate`` (a :class:`DepthDiff` for the
client's book) and ``kline`` frames and user-data ``executionReport`` events; everything else
(replies, other channels, account updates) gives ``None``. The parsers are the processor's
(:mod:`venues.binance.marketdata`, :mod:`venues.binance.candles`, :mod:`venues.binance.wire`),
so the client and the pipeline read a frame the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.messages import DepthDiff
from tickpipe.common.schema import Bar, Event
from tickpipe.venues.binance import candles
from tickpipe.venues.binance.marketdata import parse_book_ticker, parse_depth_diff
from tickpipe.venues.binance.wire import parse_execution_report, parse_trade, unwrap

__all__ = ["normalise", "parse_book_ticker", "parse_kline"]


def parse_kline(data: Any) -> Bar:
    """Convert a ``kline`` payload into a :class:`Bar` (``final`` once the venue closed it):
    the processor's reading (:func:`venues.binance.candles.parse_kline`), without its flag."""
    return candles.parse_kline(data).bar


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
