"""Turn simulated trades into every market stream and REST market-data body (pure, no I/O).

One :class:`~mock_ws.book.SimBook` per symbol moves with each trade; each trade yields its
``@trade`` and ``@aggTrade`` events (one aggregate per trade) and a ``@bookTicker`` event. Depth
diffs (``@depth`` every 1000 ms, ``@depth@100ms``) and partial depth (``@depth5/10/20``) are
built per interval by :meth:`MarketFeed.depth_events`. The last ``history`` trades per symbol are
kept for ``/api/v3/trades``, ``historicalTrades`` and ``aggTrades``. Klines of every interval
and rolling tickers (24 h, mini, and the 1h/4h/1d windows) are built by
:mod:`mock_ws.binance.candles` and sent by :meth:`MarketFeed.second_events` once a second
(klines of intervals above 1s every 2 s), with the ``avgPrice`` of the last five minutes. A
1h or 4h window starts with the trades of the 24-hour one when first subscribed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from tickpipe.mock_ws.binance.candles import (
    HOUR_MS,
    INTERVALS,
    Candle,
    CandleSeries,
    RollingTicker,
)
from tickpipe.mock_ws.book import SimBook
from tickpipe.mock_ws.market import QTY_UNITS, TICKS_PER_UNIT, MarketSim, SimTrade
from tickpipe.mock_ws.order_model import d8

__all__ = ["AVG_PRICE_MINS", "FeedEvent", "MarketFeed", "TradeHistory"]

HISTORY = 100_000


PARTIAL_LEVELS = (5, 10, 20)
#: (stream, payload, the trade it reports or None)
FeedEvent = tuple[str, Any, SimTrade | None]
PLUS8_MS = 8 * 3_600_000
#: The minutes ``avgPrice`` averages over.
AVG_PRICE_MINS = 5
#: Rolling-window ticker streams (``ticker_<window>``) below a day: window -> length.
_WINDOWS_MS = {"1h": HOUR_MS, "4h": 4 * HOUR_MS}
_WINDOWS = ("1h", "4h", "1d")


class TradeHistory:
    """The last ``maxlen`` trades of a symbol with their aggregate ids, for the REST endpoints.

    Rows are kept as plain tuples of plain values, which the garbage collector stops tracking
    (it never untracks a named tuple): a full collection then skips the history. Kept as
    SimTrade objects, 100,000 trades per symbol made a full collection take 400 ms, holding the
    event loop that long.
    """

    def __init__(self, maxlen: int) -> None:
        self._rows: deque[tuple[Any, ...]] = deque(maxlen=maxlen)

    def append(self, item: tuple[int, SimTrade]) -> None:
        agg_id, trade = item
        self._rows.append((agg_id, *trade))

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> tuple[int, SimTrade]:
        row = self._rows[index]
        return row[0], SimTrade(*row[1:])

    def __iter__(self) -> Iterator[tuple[int, SimTrade]]:
        for row in self._rows:
            yield row[0], SimTrade(*row[1:])


def _units(text: str, scale: int) -> int:
    return round(Decimal(text) * scale)


class MarketFeed:
    """Books, aggregate ids and trade history of every symbol of a :class:`MarketSim`."""

    def __init__(self, market: MarketSim, seed: int, *, history: int = HISTORY) -> None:
        self.market = market
        self.books = {
            s: SimBook(s, _units(market.start_price(s), TICKS_PER_UNIT), seed)
            for s in market.symbols
        }
        self.trades: dict[str, TradeHistory] = {s: TradeHistory(history) for s in market.symbols}
        self._next_agg = dict.fromkeys(market.symbols, 1)
        self.candles: dict[tuple[str, str], CandleSeries] = {
            (s, name): CandleSeries(name) for s in market.symbols for name in INTERVALS
        }
        self.tickers = {s: RollingTicker() for s in market.symbols}
        #: (symbol, window) -> the 1h/4h window's ticker, from when it is first wanted.
        self.windows: dict[tuple[str, str], RollingTicker] = {}
        self._windows_of: dict[str, list[RollingTicker]] = {}
        self._plus8: dict[str, list[str]] = {}
        self.depth_override: Callable[[str, int], dict[str, Any]] | None = None
        self._emitted: dict[tuple[str, int], int] = {}

    def on_trades(self, trades: list[SimTrade], now_ms: int) -> list[FeedEvent]:
        """Apply trades to the books and return their trade, aggTrade and bookTicker events."""
        out: list[FeedEvent] = []
        for trade in trades:
            symbol = trade.symbol
            low = symbol.lower()
            book = self.books[symbol]
            book.apply_trade(
                _units(trade.price, TICKS_PER_UNIT),
                _units(trade.qty, QTY_UNITS),
                trade.buyer_is_maker,
            )
            agg_id = self._next_agg[symbol]
            self._next_agg[symbol] = agg_id + 1
            self.trades[symbol].append((agg_id, trade))
            event_ms = max(now_ms, trade.trade_time_ms)
            price, qty = Decimal(trade.price), Decimal(trade.qty)
            seconds = self.candles[(symbol, "1s")]
            self._fold(symbol, seconds.roll(trade.trade_time_ms))
            seconds.add(trade.trade_time_ms, price, qty, trade.trade_id, trade.buyer_is_maker)
            self.tickers[symbol].add(trade.trade_time_ms, price, qty, trade.trade_id)
            for window in self._windows_of.get(symbol, ()):
                window.add(trade.trade_time_ms, price, qty, trade.trade_id)
            out.append((f"{low}@trade", trade.payload(event_ms), trade))
            agg = {"e": "aggTrade", "E": event_ms, "s": symbol, **self._agg(agg_id, trade)}
            out.append((f"{low}@aggTrade", agg, trade))
            out.append((f"{low}@bookTicker", book.book_ticker(), None))
        return out

    def depth_events(
        self,
        interval_ms: int,
        now_ms: int,
        wanted: set[str] | None = None,
        *,
        diffs_wanted_only: bool = False,
    ) -> list[FeedEvent]:
        """Return the diff and partial-depth events of one ``interval_ms`` (100 or 1000) tick.

        Partial depth is only built for streams in ``wanted`` (None = all). With
        ``diffs_wanted_only`` a symbol's diff is built only when one of its diff streams of this
        interval is in ``wanted``; otherwise the diff is passed over as if it had been sent, so a
        client subscribing later gets the updates from then on, contiguous as always. (Merging
        100 ms of book updates per symbol held the server's loop for milliseconds every tick,
        for streams nobody read.)
        """
        out: list[FeedEvent] = []
        suffixes = ("@100ms",) if interval_ms == 100 else ("", "@1000ms")
        for symbol, book in self.books.items():
            low = symbol.lower()
            key = (symbol, interval_ms)
            if (
                diffs_wanted_only
                and wanted is not None
                and not any(f"{low}@depth{suffix}" in wanted for suffix in suffixes)
            ):
                self._emitted[key] = book.update_id
                diff = None
            else:
                diff = book.diff_since(self._emitted.get(key, book.update_id - 1))
            if diff is not None:
                self._emitted[key] = diff.last_id
                payload = {
                    "e": "depthUpdate",
                    "E": now_ms,
                    "s": symbol,
                    "U": diff.first_id,
                    "u": diff.last_id,
                    "b": diff.bids,
                    "a": diff.asks,
                }
                out.extend((f"{low}@depth{suffix}", payload, None) for suffix in suffixes)
            for levels in PARTIAL_LEVELS:
                names = [f"{low}@depth{levels}{suffix}" for suffix in suffixes]
                names = [n for n in names if wanted is None or n in wanted]
                if names:
                    partial = book.snapshot(levels)
                    out.extend((name, partial, None) for name in names)
        return out

    def second_events(self, now_ms: int, tick: int, wanted: set[str]) -> list[FeedEvent]:
        """Return the kline and ticker events of one 1-second tick (``tick`` counts them)."""
        out: list[FeedEvent] = []
        for symbol in self.tickers:
            self._fold(symbol, self.candles[(symbol, "1s")].roll(now_ms))
        for (symbol, name), series in list(self.candles.items()):
            stream = f"{symbol.lower()}@kline_{name}"
            series.roll(now_ms)
            closed = series.unreported()
            if stream not in wanted:
                continue
            interval = name.removesuffix("@+08:00")
            finals = [(c, True) for c in closed]
            due = interval == "1s" or tick % 2 == 0
            view = self._view(symbol, name)
            current = [(view, False)] if due and view is not None else []
            for candle, done in finals + current:
                k = candle.payload(symbol, interval, done)
                out.append((stream, {"e": "kline", "E": now_ms, "s": symbol, "k": k}, None))
        for name in wanted:  # +08:00 series start when first wanted
            symbol, _, channel = name.partition("@kline_")
            if channel.endswith("@+08:00") and (symbol.upper(), channel) not in self.candles:
                self.candles[(symbol.upper(), channel)] = CandleSeries(
                    channel.removesuffix("@+08:00"), PLUS8_MS
                )
                self._plus8.setdefault(symbol.upper(), []).append(channel)
        minis = []
        for symbol, ticker in self.tickers.items():
            low = symbol.lower()
            mini = ticker.mini(symbol, now_ms)
            if mini is None:
                continue
            if ticker.changed:
                minis.append(mini)
                ticker.changed = False
            if f"{low}@miniTicker" in wanted:
                out.append((f"{low}@miniTicker", mini, None))
            if f"{low}@ticker" in wanted:
                full = ticker.full(symbol, now_ms, self.books[symbol].book_ticker())
                out.append((f"{low}@ticker", full, None))
            for window in _WINDOWS:
                if f"{low}@ticker_{window}" in wanted:
                    stats = self._window(symbol, window).rolling(symbol, now_ms, f"{window}Ticker")
                    if stats is not None:
                        out.append((f"{low}@ticker_{window}", stats, None))
            if f"{low}@avgPrice" in wanted:
                price, close_ms = self.average_price(symbol, now_ms)
                average = {"e": "avgPrice", "E": now_ms, "s": symbol,
                           "i": f"{AVG_PRICE_MINS}m", "w": price, "T": close_ms}  # fmt: skip
                out.append((f"{low}@avgPrice", average, None))
        if minis and "!miniTicker@arr" in wanted:
            out.append(("!miniTicker@arr", minis, None))
        return out

    def _window(self, symbol: str, window: str) -> RollingTicker:
        """The ticker of a rolling window (1d is the 24-hour one), seeded when first wanted."""
        if window not in _WINDOWS_MS:
            return self.tickers[symbol]
        ticker = self.windows.get((symbol, window))
        if ticker is None:
            ticker = self.windows[(symbol, window)] = RollingTicker(_WINDOWS_MS[window])
            for ms, price, qty, trade_id in self.tickers[symbol].trades:
                ticker.add(ms, price, qty, trade_id)
            self._windows_of.setdefault(symbol, []).append(ticker)
        return ticker

    def average_price(self, symbol: str, now_ms: int) -> tuple[str, int]:
        """The volume-weighted price of the last :data:`AVG_PRICE_MINS` minutes' trades and the
        last trade's time (the last price and trade time when none traded in the window)."""
        history = self.trades[symbol]
        since_ms = now_ms - AVG_PRICE_MINS * 60_000
        volume = quote = Decimal(0)
        close_ms = 0
        for index in range(len(history) - 1, -1, -1):
            trade = history[index][1]
            if trade.trade_time_ms < since_ms:
                break
            qty = Decimal(trade.qty)
            volume += qty
            quote += Decimal(trade.price) * qty
            close_ms = max(close_ms, trade.trade_time_ms)
        if volume:
            price = quote / volume
        else:
            price = Decimal(self.market.last_price(symbol))
            close_ms = history[-1][1].trade_time_ms if len(history) else now_ms
        return f"{price.quantize(Decimal('0.00000001')):f}", close_ms

    def klines(
        self, symbol: str, interval: str, start: int | None, end: int | None, limit: int
    ) -> list[list[Any]]:
        """Return ``GET /api/v3/klines`` rows."""
        live = None if interval == "1s" else self.candles[(symbol, "1s")].current
        return self.candles[(symbol, interval)].rows(start, end, limit, live)

    def _fold(self, symbol: str, closed: list[Candle]) -> None:
        """Fold closed 1s candles into every longer series of the symbol."""
        if not closed:
            return
        names = [n for n in INTERVALS if n != "1s"] + self._plus8.get(symbol, [])
        for name in names:
            series = self.candles[(symbol, name)]
            for candle in closed:
                series.fold(candle)

    def _view(self, symbol: str, name: str) -> Candle | None:
        series = self.candles[(symbol, name)]
        if name == "1s":
            return series.current
        return series.view(self.candles[(symbol, "1s")].current)

    # ---- REST bodies --------------------------------------------------------------------------

    def depth(self, symbol: str, limit: int) -> dict[str, Any]:
        """Return the ``GET /api/v3/depth`` body (from ``depth_override`` when replaying)."""
        if self.depth_override is not None:
            return self.depth_override(symbol, limit)
        return self.books[symbol].snapshot(limit)

    def add_history(self, trade: SimTrade) -> None:
        """Keep a trade (a replayed one) for the REST trade endpoints."""
        agg_id = self._next_agg[trade.symbol]
        self._next_agg[trade.symbol] = agg_id + 1
        self.trades[trade.symbol].append((agg_id, trade))

    def recent_trades(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        """Return the last ``limit`` trades, oldest first (``/api/v3/trades``)."""
        history = self.trades[symbol]
        start = max(0, len(history) - limit)
        return [self._rest_trade(history[i][1]) for i in range(start, len(history))]

    def historical_trades(
        self, symbol: str, limit: int, from_id: int | None
    ) -> list[dict[str, Any]]:
        """Return ``limit`` trades from trade id ``from_id`` (default: the most recent)."""
        history = self.trades[symbol]
        if from_id is None or not history:
            return self.recent_trades(symbol, limit)
        first_id = history[0][1].trade_id
        start = max(0, from_id - first_id)
        end = min(len(history), start + limit)
        return [self._rest_trade(history[i][1]) for i in range(start, end)]

    def agg_trades(
        self,
        symbol: str,
        limit: int,
        from_id: int | None,
        start_ms: int | None,
        end_ms: int | None,
    ) -> list[dict[str, Any]]:
        """Return ``/api/v3/aggTrades`` entries by ``fromId`` or time window, oldest first."""
        history = self.trades[symbol]
        if from_id is None and start_ms is None and end_ms is None:
            start = max(0, len(history) - limit)
            picked = [history[i] for i in range(start, len(history))]
        elif from_id is not None:
            first = history[0][0] if history else from_id
            start = max(0, from_id - first)
            picked = [history[i] for i in range(start, min(len(history), start + limit))]
        else:
            low = start_ms if start_ms is not None else 0
            high = end_ms if end_ms is not None else 1 << 62
            picked = [e for e in history if low <= e[1].trade_time_ms <= high][:limit]
        return [self._agg(agg_id, trade) for agg_id, trade in picked]

    @staticmethod
    def _agg(agg_id: int, trade: SimTrade) -> dict[str, Any]:
        return {
            "a": agg_id,
            "p": trade.price,
            "q": trade.qty,
            "f": trade.trade_id,
            "l": trade.trade_id,
            "T": trade.trade_time_ms,
            "m": trade.buyer_is_maker,
            "M": True,
        }

    @staticmethod
    def _rest_trade(trade: SimTrade) -> dict[str, Any]:
        quote = Decimal(trade.price) * Decimal(trade.qty)
        return {
            "id": trade.trade_id,
            "price": trade.price,
            "qty": trade.qty,
            "quoteQty": d8(quote),
            "time": trade.trade_time_ms,
            "isBuyerMaker": trade.buyer_is_maker,
            "isBestMatch": True,
        }
