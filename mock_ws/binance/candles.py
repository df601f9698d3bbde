"""Build klines of every Binance interval and rolling 24-hour tickers from trades (pure).

Candles open at UTC boundaries (weeks on Monday, months on the 1st; ``offset_ms`` shifts them,
as ``@+08:00`` does). A period without trades yields a candle at the previous close with zero
volume and trade ids -1. The 24-hour window keeps running sums and monotonic queues for the
high and low, so a ticker costs O(1) amortised per trade.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickpipe.mock_ws.order_model import d8

__all__ = ["INTERVALS", "Candle", "CandleSeries", "RollingTicker", "period_start"]

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
INTERVALS: dict[str, int] = {
    "1s": SECOND_MS,
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1d": DAY_MS,
    "3d": 3 * DAY_MS,
    "1w": 7 * DAY_MS,
    "1M": 0,  # calendar month
}
_MONDAY_MS = 4 * DAY_MS  # 1970-01-05 was a Monday
HISTORY = 1000


def _month_start(ms: int, step: int) -> int:
    day = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    start = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if step > 0:
        year, month = divmod(start.month - 1 + step, 12)
        start = start.replace(year=start.year + year, month=month + 1)
    return int(start.timestamp() * 1000)


def period_start(interval: str, ms: int, offset_ms: int = 0, step: int = 0) -> int:
    """Return the open time of the candle holding ``ms`` (``step`` periods later)."""
    local = ms + offset_ms
    if interval == "1M":
        return _month_start(local, step) - offset_ms
    size = INTERVALS[interval]
    anchor = _MONDAY_MS if interval == "1w" else 0
    return (local - anchor) // size * size + anchor + step * size - offset_ms


@dataclass
class Candle:
    """One kline being built or closed."""

    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    taker_volume: Decimal = Decimal(0)
    taker_quote: Decimal = Decimal(0)
    trades: int = 0
    first_id: int = -1
    last_id: int = -1

    def add(self, price: Decimal, qty: Decimal, trade_id: int, buyer_is_maker: bool) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = price
            self.first_id = trade_id
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.volume += qty
        self.quote += price * qty
        if not buyer_is_maker:  # the buyer was the taker
            self.taker_volume += qty
            self.taker_quote += price * qty
        self.trades += 1
        self.last_id = trade_id

    def merge(self, other: Candle) -> None:
        """Fold a shorter candle that lies inside this one into it."""
        if other.trades == 0:
            return
        if self.trades == 0:
            self.open, self.high, self.low = other.open, other.high, other.low
            self.first_id = other.first_id
        else:
            self.high = max(self.high, other.high)
            self.low = min(self.low, other.low)
        self.close = other.close
        self.volume += other.volume
        self.quote += other.quote
        self.taker_volume += other.taker_volume
        self.taker_quote += other.taker_quote
        self.trades += other.trades
        self.last_id = other.last_id

    def payload(self, symbol: str, interval: str, closed: bool) -> dict[str, Any]:
        """Return the ``k`` object of a kline event."""
        return {
            "t": self.open_ms,
            "T": self.close_ms,
            "s": symbol,
            "i": interval,
            "f": self.first_id,
            "L": self.last_id,
            "o": d8(self.open),
            "c": d8(self.close),
            "h": d8(self.high),
            "l": d8(self.low),
            "v": d8(self.volume),
            "n": self.trades,
            "x": closed,
            "q": d8(self.quote),
            "V": d8(self.taker_volume),
            "Q": d8(self.taker_quote),
            "B": "0",
        }

    def row(self) -> list[Any]:
        """Return the ``GET /api/v3/klines`` row."""
        return [
            self.open_ms,
            d8(self.open),
            d8(self.high),
            d8(self.low),
            d8(self.close),
            d8(self.volume),
            self.close_ms,
            d8(self.quote),
            self.trades,
            d8(self.taker_volume),
            d8(self.taker_quote),
            "0",
        ]


class CandleSeries:
    """The current candle and recent closed candles of one symbol and interval."""

    def __init__(self, interval: str, offset_ms: int = 0) -> None:
        self.interval = interval
        self.offset_ms = offset_ms
        self.current: Candle | None = None
        self.closed: deque[Candle] = deque(maxlen=HISTORY)
        self._reported_ms = -1  # open time of the last closed candle reported

    def _new(self, ms: int, price: Decimal) -> Candle:
        start = period_start(self.interval, ms, self.offset_ms)
        end = period_start(self.interval, ms, self.offset_ms, step=1) - 1
        return Candle(start, end, price, price, price, price)

    def roll(self, now_ms: int) -> list[Candle]:
        """Close candles that ended before ``now_ms``; return them, oldest first."""
        out: list[Candle] = []
        while self.current is not None and now_ms > self.current.close_ms:
            done = self.current
            self.closed.append(done)
            out.append(done)
            self.current = self._new(done.close_ms + 1, done.close)
            if len(out) > 2:  # a long idle gap: jump to now
                self.current = self._new(now_ms, done.close)
        return out

    def add(self, trade_ms: int, price: Decimal, qty: Decimal, trade_id: int, m: bool) -> None:
        """Add a trade to the current candle, opening or rolling candles as needed."""
        self.roll(trade_ms)
        if self.current is None:
            self.current = self._new(trade_ms, price)
        self.current.add(price, qty, trade_id, m)

    def unreported(self) -> list[Candle]:
        """Return the candles closed since the last call, oldest first."""
        out: list[Candle] = []
        for candle in reversed(self.closed):
            if candle.open_ms <= self._reported_ms:
                break
            out.append(candle)
        if out:
            self._reported_ms = out[0].open_ms
        return out[::-1]

    def fold(self, candle: Candle) -> None:
        """Fold a closed finer candle (a 1s one) into this series."""
        self.roll(candle.open_ms)
        if self.current is None:
            if candle.trades == 0:
                return
            self.current = self._new(candle.open_ms, candle.open)
        self.current.merge(candle)

    def view(self, live: Candle | None) -> Candle | None:
        """Return the current candle with the still-open finer candle ``live`` folded in."""
        if live is None or live.trades == 0:
            return self.current
        current = self.current
        if current is not None and current.open_ms <= live.open_ms <= current.close_ms:
            merged = dataclasses.replace(current)
        else:
            merged = self._new(live.open_ms, live.open)
        merged.merge(live)
        return merged

    def rows(
        self,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        live: Candle | None = None,
    ) -> list[list[Any]]:
        """Return klines rows overlapping the window, oldest first, at most ``limit``."""
        current = self.view(live)
        candles = [*self.closed, *([current] if current else [])]
        picked = [
            c
            for c in candles
            if (start_ms is None or c.open_ms >= start_ms)
            and (end_ms is None or c.open_ms <= end_ms)
        ]
        picked = picked[:limit] if start_ms is not None else picked[-limit:]
        return [c.row() for c in picked]


_NO_BOOK = {"b": "", "B": "", "a": "", "A": ""}


class RollingTicker:
    """Rolling 24-hour statistics of one symbol's trades."""

    def __init__(self, window_ms: int = DAY_MS) -> None:
        self.window_ms = window_ms
        self.trades: deque[tuple[int, Decimal, Decimal, int]] = deque()
        self.volume = Decimal(0)
        self.quote = Decimal(0)
        self._highs: deque[tuple[int, Decimal, int]] = deque()
        self._lows: deque[tuple[int, Decimal, int]] = deque()
        self.last_qty = Decimal(0)
        self.changed = False

    def add(self, ms: int, price: Decimal, qty: Decimal, trade_id: int) -> None:
        self.trades.append((ms, price, qty, trade_id))
        self.volume += qty
        self.quote += price * qty
        while self._highs and self._highs[-1][1] <= price:
            self._highs.pop()
        self._highs.append((ms, price, trade_id))
        while self._lows and self._lows[-1][1] >= price:
            self._lows.pop()
        self._lows.append((ms, price, trade_id))
        self.last_qty = qty
        self.changed = True

    def expire(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        while self.trades and self.trades[0][0] < cutoff:
            _, price, qty, trade_id = self.trades.popleft()
            self.volume -= qty
            self.quote -= price * qty
            for queue in (self._highs, self._lows):
                if queue and queue[0][2] == trade_id:
                    queue.popleft()

    def mini(self, symbol: str, now_ms: int) -> dict[str, Any] | None:
        """Return the ``24hrMiniTicker`` payload (None before the first trade)."""
        self.expire(now_ms)
        if not self.trades:
            return None
        return {
            "e": "24hrMiniTicker",
            "E": now_ms,
            "s": symbol,
            "c": d8(self.trades[-1][1]),
            "o": d8(self.trades[0][1]),
            "h": d8(self._highs[0][1]),
            "l": d8(self._lows[0][1]),
            "v": d8(self.volume),
            "q": d8(self.quote),
        }

    def rolling(self, symbol: str, now_ms: int, event: str) -> dict[str, Any] | None:
        """Return a rolling-window ``<window>Ticker`` payload (``event``): the full ticker's
        statistics without last quantity and book, opening on a whole minute as the venue's."""
        full = self.full(symbol, now_ms, _NO_BOOK)
        if full is None:
            return None
        out = {k: v for k, v in full.items() if k not in _NO_BOOK and k not in ("x", "Q")}
        out["e"] = event
        out["O"] = (now_ms - self.window_ms) // MINUTE_MS * MINUTE_MS
        return out

    def full(self, symbol: str, now_ms: int, bbo: dict[str, Any]) -> dict[str, Any] | None:
        """Return the ``24hrTicker`` payload; ``bbo`` is the symbol's bookTicker."""
        mini = self.mini(symbol, now_ms)
        if mini is None:
            return None
        first, last = self.trades[0], self.trades[-1]
        change = last[1] - first[1]
        percent = (change / first[1] * 100).quantize(Decimal("0.001"))
        vwap = self.quote / self.volume if self.volume else Decimal(0)
        return {
            "e": "24hrTicker",
            "E": now_ms,
            "s": symbol,
            "p": d8(change),
            "P": f"{percent:f}",
            "w": d8(vwap),
            "x": d8(first[1]),
            "c": mini["c"],
            "Q": d8(self.last_qty),
            "b": bbo["b"],
            "B": bbo["B"],
            "a": bbo["a"],
            "A": bbo["A"],
            "o": mini["o"],
            "h": mini["h"],
            "l": mini["l"],
            "v": mini["v"],
            "q": mini["q"],
            "O": now_ms - self.window_ms,
            "C": now_ms,
            "F": first[3],
            "L": last[3],
            "n": len(self.trades),
        }
