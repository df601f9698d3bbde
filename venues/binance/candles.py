"""Parse Binance ``kline`` events into the venue's own bars (pure, no I/O).

A ``<symbol>@kline_<interval>`` stream pushes the current candle of every interval Binance
offers (``1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M``) about every second or two, and
a last time with ``x: true`` when it closes. Each push becomes a :class:`common.messages.VenueBar`
(``final`` = ``x``); the processor numbers the pushes of one candle as revisions and writes them
to the partition's ``venue-bars`` stream, next to Alpaca's own bars. The bar's ``interval`` is the
candle's ``i``; a ``kline_<interval>@+08:00`` stream's candles open and close in UTC+8, so their
bars keep the stream's suffix (``1d@+08:00``): the two series of one interval never share a name,
nor a revision count. A candle whose interval is not its stream's, and malformed payloads, raise
:class:`common.errors.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.channels import KLINE_INTERVALS, KLINE_TZ_SUFFIX
from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import VenueBar
from tickpipe.common.schema import Bar
from tickpipe.common.units import MS
from tickpipe.venues.binance.wire import decimal_text

__all__ = ["INTERVALS", "decimal_field", "int_field", "parse_kline"]

#: The kline intervals Binance Spot offers.
INTERVALS = frozenset(KLINE_INTERVALS)


def decimal_field(data: Mapping[str, Any], key: str, what: str, *, signed: bool = False) -> str:
    """Return ``data[key]``, a finite decimal string (non-negative unless ``signed``), as sent."""
    return decimal_text(data.get(key), f"{what} field {key!r}", signed=signed)


def int_field(data: Mapping[str, Any], key: str, what: str) -> int:
    """Return ``data[key]``, an integer of at least -1 (Binance's "none" id)."""
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < -1:
        raise DecodeError(f"{what} field {key!r} must be an integer, got {value!r}")
    return value


def _text(candle: Mapping[str, Any], key: str) -> str:
    return decimal_field(candle, key, "kline")


def _whole(data: Mapping[str, Any], key: str) -> int:
    return int_field(data, key, "kline")


def parse_kline(data: Any, channel: str | None = None) -> VenueBar:
    """Return the bar of one ``kline`` event (``{"e": "kline", "E", "s", "k": {...}}``).

    ``channel`` is the stream's (``kline_1d@+08:00``), ``None`` for a frame without one.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("k"), Mapping):
        raise DecodeError("kline event without its candle 'k'")
    candle = data["k"]
    symbol, interval = candle.get("s"), candle.get("i")
    if not isinstance(symbol, str) or not symbol.isalnum() or symbol != data.get("s", symbol):
        raise DecodeError(f"kline symbol is invalid: {symbol!r}")
    if interval not in INTERVALS:
        raise DecodeError(f"kline interval {interval!r} is not one Binance offers")
    if channel is not None:
        if channel.removesuffix(KLINE_TZ_SUFFIX) != f"kline_{interval}":
            raise DecodeError(f"kline of interval {interval} arrived on channel {channel}")
        if channel.endswith(KLINE_TZ_SUFFIX):
            interval += KLINE_TZ_SUFFIX
    closed = candle.get("x")
    if not isinstance(closed, bool):
        raise DecodeError(f"kline field 'x' must be true or false, got {closed!r}")
    bar = Bar(
        venue="binance",
        symbol=symbol,
        interval=interval,
        ts_open=_whole(candle, "t") * MS,
        open=_text(candle, "o"),
        high=_text(candle, "h"),
        low=_text(candle, "l"),
        close=_text(candle, "c"),
        volume=_text(candle, "v"),
        trades=_whole(candle, "n"),
        first_trade_id=str(_whole(candle, "f")),
        last_trade_id=str(_whole(candle, "L")),
        final=closed,
        ts_event=_whole(data, "E") * MS,
    )
    return VenueBar(bar, updated=False)
