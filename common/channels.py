"""Name the market channels ``TICKPIPE_CHANNELS`` accepts: Binance Spot's per-symbol streams (pure).

Each name is the part of a stream name after ``<symbol>@``. Every one of them is normalised by
the processor into a stream (see docs/architecture.md, "Stream entries"), so nothing subscribed
is passed over: trades and aggregate trades, book tickers, order-book diffs at one speed,
partial depth, klines of every interval in UTC and UTC+8, 24h, mini and rolling-window tickers
and the average price.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL_FAMILIES",
    "CHANNEL_NAMES",
    "DIFF_DEPTH_CHANNELS",
    "KLINE_INTERVALS",
    "KLINE_TZ_SUFFIX",
    "PARTIAL_DEPTH_LEVELS",
]

#: The kline intervals Binance Spot offers (``s`` seconds ... ``M`` months).
KLINE_INTERVALS = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
    "1M",
)  # fmt: skip
#: The channel of a kline whose candles open and close in UTC+8, ``kline_<interval>@+08:00``.
KLINE_TZ_SUFFIX = "@+08:00"
#: Binance's order-book diff channels: one feeds a symbol's book (100 ms or 1000 ms merges).
DIFF_DEPTH_CHANNELS = ("depth", "depth@100ms", "depth@1000ms")
_SPEEDS = ("", "@100ms", "@1000ms")
#: The levels of Binance's partial-depth channels (``depth5``, ``depth10``, ``depth20``).
PARTIAL_DEPTH_LEVELS = (5, 10, 20)
#: Every per-symbol market channel of Binance Spot that the processor normalises.
CHANNEL_NAMES = (
    "trade", "aggTrade", "bookTicker", *DIFF_DEPTH_CHANNELS,
    *(f"depth{n}{speed}" for n in PARTIAL_DEPTH_LEVELS for speed in _SPEEDS),
    *(f"kline_{i}{tz}" for tz in ("", KLINE_TZ_SUFFIX) for i in KLINE_INTERVALS),
    "ticker", "miniTicker", "ticker_1h", "ticker_4h", "ticker_1d", "avgPrice",
)  # fmt: skip
CHANNEL_FAMILIES = (
    "trade, aggTrade, bookTicker, depth[@100ms|@1000ms], depth5|10|20[@100ms|@1000ms], "
    f"kline_<{'|'.join(KLINE_INTERVALS)}>[@+08:00], ticker, miniTicker, ticker_1h|4h|1d, avgPrice"
)
