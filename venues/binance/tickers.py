"""Parse Binance rolling-window ticker events into :class:`common.messages.Ticker` (pure, no I/O).

``<symbol>@ticker`` pushes ``24hrTicker``, ``<symbol>@miniTicker`` ``24hrMiniTicker`` (no
change, average, best bid/ask or trade ids: those fields stay empty) and
``<symbol>@ticker_<1h|4h|1d>`` the ``1hTicker``/``4hTicker``/``1dTicker`` of that window, each
about once a second. ``<symbol>@avgPrice`` pushes ``avgPrice``, the volume-weighted price over
its interval ``i`` (``5m``): a ticker of that window with only ``weighted_avg`` and ``ts_close``
(the last trade's time) set. Each ticker names its channel. Prices and quantities stay the
venue's decimal strings. Malformed payloads raise :class:`common.errors.DecodeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import Ticker
from tickpipe.common.units import MS
from tickpipe.venues.binance.candles import decimal_field, int_field

__all__ = ["TICKER_EVENTS", "parse_avg_price", "parse_ticker"]

#: Event type -> the window it covers.
TICKER_EVENTS = {
    "24hrTicker": "24h", "24hrMiniTicker": "24h", "1hTicker": "1h", "4hTicker": "4h",
    "1dTicker": "1d",
}  # fmt: skip
#: Event type -> the channel that pushes it.
_CHANNELS = {
    "24hrTicker": "ticker", "24hrMiniTicker": "miniTicker", "1hTicker": "ticker_1h",
    "4hTicker": "ticker_4h", "1dTicker": "ticker_1d",
}  # fmt: skip


def _decimal(data: Mapping[str, Any], key: str, *, signed: bool = False) -> str:
    return decimal_field(data, key, "ticker", signed=signed)


def _whole(data: Mapping[str, Any], key: str) -> int:
    return int_field(data, key, "ticker")


def parse_ticker(data: Any, *, ts_recv: int) -> Ticker:
    """Return the ticker of one full or mini ticker event."""
    if not isinstance(data, Mapping) or data.get("e") not in TICKER_EVENTS:
        raise DecodeError(f"not a ticker event: {str(data)[:80]!r}")
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol.isalnum():
        raise DecodeError(f"ticker symbol is invalid: {symbol!r}")
    full = data["e"] != "24hrMiniTicker"

    def opt(key: str, *, signed: bool = False) -> str:
        return _decimal(data, key, signed=signed) if full else ""

    def opt_id(key: str) -> str:
        return str(_whole(data, key)) if full else ""

    return Ticker(
        venue="binance",
        symbol=symbol,
        window=TICKER_EVENTS[data["e"]],
        open=_decimal(data, "o"),
        high=_decimal(data, "h"),
        low=_decimal(data, "l"),
        last=_decimal(data, "c"),
        volume=_decimal(data, "v"),
        quote_volume=_decimal(data, "q"),
        price_change=opt("p", signed=True),
        price_change_pct=opt("P", signed=True),
        weighted_avg=opt("w"),
        bid_price=opt("b") if "b" in data else "",
        ask_price=opt("a") if "a" in data else "",
        first_trade_id=opt_id("F"),
        last_trade_id=opt_id("L"),
        trades=_whole(data, "n") if full else 0,
        ts_open=_whole(data, "O") * MS if full else 0,
        ts_close=_whole(data, "C") * MS if full else 0,
        ts_event=_whole(data, "E") * MS,
        ts_recv=ts_recv,
        channel=_CHANNELS[data["e"]],
    )


def parse_avg_price(data: Any, *, ts_recv: int) -> Ticker:
    """Return the average price of one ``avgPrice`` event as a ticker of its interval."""
    if not isinstance(data, Mapping) or data.get("e") != "avgPrice":
        raise DecodeError(f"not an avgPrice event: {str(data)[:80]!r}")
    symbol, window = data.get("s"), data.get("i")
    if not isinstance(symbol, str) or not symbol.isalnum():
        raise DecodeError(f"avgPrice symbol is invalid: {symbol!r}")
    if not isinstance(window, str) or not (window[:-1].isdigit() and window[-1:].isalpha()):
        raise DecodeError(f"avgPrice interval is invalid: {window!r}")
    return Ticker(
        venue="binance",
        symbol=symbol,
        window=window,
        open="",
        high="",
        low="",
        last="",
        volume="",
        quote_volume="",
        price_change="",
        price_change_pct="",
        weighted_avg=decimal_field(data, "w", "avgPrice"),
        bid_price="",
        ask_price="",
        first_trade_id="",
        last_trade_id="",
        trades=0,
        ts_open=0,
        ts_close=int_field(data, "T", "avgPrice") * MS,
        ts_event=int_field(data, "E", "avgPrice") * MS,
        ts_recv=ts_recv,
        channel="avgPrice",
    )
