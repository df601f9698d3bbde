"""Build OHLCV bars on exchange time from trades (pure, no I/O).

One :class:`OpenBar` per ``(symbol, interval)``. A trade in a later bucket finalises the open bar
(emitted with ``final=True``) and opens the next one; a trade in an earlier bucket is *late*: it is
counted and dropped in this version (late-data revisions come later). At the end of every batch,
:meth:`BarBuilder.flush` emits each bar the batch touched that is still open, with ``final=False``,
so live charts can draw the forming candle.

Revisions are deterministic: a bar's ``revision`` is the number of trades folded into it, so the
revisions of one bar grow strictly from one partial emission to the next, and its final emission
carries the same revision as the last partial one or a higher one. Consumers upsert by
``(symbol, interval, ts_open)`` and keep the greatest ``(revision, final)``. Prices stay the venue's
decimal strings (compared as ``Decimal``); volume is a ``Decimal`` sum rendered as a string.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from common.names import BAR_INTERVALS
from common.schema import Bar, Trade

__all__ = ["BarBuilder", "OpenBar", "bucket_start"]

# Volumes are exact sums: far more digits than any venue quantity can need.
_SUM = decimal.Context(prec=60)


def bucket_start(ts_ns: int, interval_ns: int) -> int:
    """Return the start of the interval that holds ``ts_ns`` (floor to a multiple)."""
    return ts_ns - ts_ns % interval_ns


@dataclass
class OpenBar:
    """A bar that may still change; OHLC keep the venue's strings."""

    ts_open: int
    open: str
    high: str
    low: str
    close: str
    volume: Decimal
    trades: int
    first_trade_id: str
    last_trade_id: str
    ts_event: int
    _high: Decimal = field(init=False, repr=False, compare=False)
    _low: Decimal = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._high = Decimal(self.high)
        self._low = Decimal(self.low)

    @classmethod
    def first(cls, ts_open: int, trade: Trade) -> OpenBar:
        """Open a bar with ``trade`` as its first trade."""
        return cls(
            ts_open=ts_open,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            close=trade.price,
            volume=Decimal(trade.qty),
            trades=1,
            first_trade_id=trade.trade_id,
            last_trade_id=trade.trade_id,
            ts_event=trade.ts_event,
        )

    def add(self, trade: Trade) -> None:
        """Fold one more trade of the same bucket into the bar."""
        price = Decimal(trade.price)
        if price > self._high:
            self.high, self._high = trade.price, price
        if price < self._low:
            self.low, self._low = trade.price, price
        self.close = trade.price
        self.volume = _SUM.add(self.volume, Decimal(trade.qty))
        self.trades += 1
        self.last_trade_id = trade.trade_id
        self.ts_event = max(self.ts_event, trade.ts_event)

    def to_bar(self, venue: str, symbol: str, interval: str, *, final: bool) -> Bar:
        """Render the bar as a :class:`common.schema.Bar`."""
        return Bar(
            venue=venue,
            symbol=symbol,
            interval=interval,
            ts_open=self.ts_open,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=str(self.volume),
            trades=self.trades,
            first_trade_id=self.first_trade_id,
            last_trade_id=self.last_trade_id,
            final=final,
            revision=self.trades,
            ts_event=self.ts_event,
        )

    def to_state(self) -> list[Any]:
        """Return a msgpack-friendly list (checkpoint)."""
        return [
            self.ts_open,
            self.open,
            self.high,
            self.low,
            self.close,
            str(self.volume),
            self.trades,
            self.first_trade_id,
            self.last_trade_id,
            self.ts_event,
        ]

    @classmethod
    def from_state(cls, data: list[Any]) -> OpenBar:
        """Rebuild a bar from :meth:`to_state`'s output."""
        ts_open, o, h, low, c, volume, trades, first_id, last_id, ts_event = data
        return cls(
            int(ts_open), o, h, low, c, Decimal(volume), int(trades), first_id, last_id, ts_event
        )


class BarBuilder:
    """Keep the open bar of every ``(symbol, interval)`` and emit bars as trades arrive."""

    def __init__(self, venue: str, intervals: dict[str, int] | None = None) -> None:
        self.venue = venue
        self.intervals = dict(BAR_INTERVALS if intervals is None else intervals)
        self.open: dict[tuple[str, str], OpenBar] = {}
        self.late_trades = 0
        self._touched: dict[tuple[str, str], None] = {}

    def on_trade(self, trade: Trade) -> list[Bar]:
        """Fold ``trade`` into its bars; return the bars it finalised (``final=True``)."""
        finished: list[Bar] = []
        for interval, length_ns in self.intervals.items():
            key = (trade.symbol, interval)
            ts_open = bucket_start(trade.ts_event, length_ns)
            bar = self.open.get(key)
            if bar is None:
                self.open[key] = OpenBar.first(ts_open, trade)
            elif ts_open == bar.ts_open:
                bar.add(trade)
            elif ts_open > bar.ts_open:
                finished.append(bar.to_bar(self.venue, trade.symbol, interval, final=True))
                self.open[key] = OpenBar.first(ts_open, trade)
            else:
                self.late_trades += 1
                continue
            self._touched[key] = None
        return finished

    def flush(self) -> list[Bar]:
        """Return every bar touched since the last flush that is still open (``final=False``)."""
        out = [
            self.open[key].to_bar(self.venue, key[0], key[1], final=False) for key in self._touched
        ]
        self._touched.clear()
        return out

    def to_state(self) -> dict[str, Any]:
        """Return the open bars and the late count as msgpack-friendly values (checkpoint)."""
        bars = [[symbol, interval, bar.to_state()] for (symbol, interval), bar in self.open.items()]
        return {"open": bars, "late": self.late_trades}

    def load_state(self, data: dict[str, Any]) -> None:
        """Replace the open bars and the late count with the ones saved by :meth:`to_state`."""
        self.open = {(s, i): OpenBar.from_state(b) for s, i, b in data["open"]}
        self.late_trades = int(data["late"])
        self._touched.clear()
