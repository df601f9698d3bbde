"""Build OHLCV bars on exchange time from trades, finalised on a watermark (pure, no I/O).

The *watermark* is the greatest event time seen across the partition (trades and depth diffs)
minus an allowed lateness. A bar is final once the watermark passes its end, so a quiet symbol's
bar finalises on the other symbols' events, deterministically from the raw stream. Bars are
finalised as each event arrives (not at batch ends), so batch boundaries never change what is
final.

A trade whose bar is already final is *late*: within the revision horizon (the bar's end is less
than ``horizon`` behind the watermark) the bar is revised and emitted again, ``final=True`` with a
higher revision; older ones are counted and reported as too late (the processor dead-letters
them). Empty buckets follow a policy: ``skip`` emits nothing, ``carry`` emits a final bar with
open = high = low = close = the previous close and volume 0.

A bar's ``revision`` is the number of trades folded into it, so the emissions of one bar grow
strictly. At the end of every batch :meth:`BarBuilder.flush` emits each still-open bar that the
batch changed, once, with ``final=False``. Consumers upsert by ``(symbol, interval, ts_open)`` and
keep the greatest ``(revision, final)``. Prices stay the venue's decimal strings (compared as
``Decimal``); volume is a ``Decimal`` sum rendered as a string.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tickpipe.common.decimals import decimal_of
from tickpipe.common.names import BAR_INTERVALS
from tickpipe.common.schema import Bar, Trade

__all__ = ["EMPTY_POLICIES", "BarBuilder", "OpenBar", "bucket_start"]

EMPTY_POLICIES = ("skip", "carry")
#: At most this many empty bars are carried per symbol and interval in one step.
MAX_CARRIED = 3600

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
    # The trade ids as integers, once known (None: parse the string when needed).
    _first_id: int | None = field(init=False, repr=False, compare=False, default=None)
    _last_id: int | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        self._high = decimal_of(self.high)
        self._low = decimal_of(self.low)

    @classmethod
    def first(cls, ts_open: int, trade: Trade) -> OpenBar:
        """Open a bar with ``trade`` as its first trade."""
        return cls(
            ts_open,
            trade.price,
            trade.price,
            trade.price,
            trade.price,
            decimal_of(trade.qty),
            1,
            trade.trade_id,
            trade.trade_id,
            trade.ts_event,
        )

    @classmethod
    def empty(cls, ts_open: int, close: str) -> OpenBar:
        """Return a bar without trades: every price the previous close, volume 0."""
        return cls(ts_open, close, close, close, close, Decimal(0), 0, "", "", ts_open)

    def add(self, trade: Trade) -> None:
        """Fold one more trade of the same bucket into the bar.

        Open and close follow trade ids (the venue's time order), not arrival order, so a late
        trade revises a bar to what it would have been had the trade come on time.
        """
        self.fold(trade, decimal_of(trade.price), int(trade.trade_id), decimal_of(trade.qty))

    def fold(self, trade: Trade, price: Decimal, trade_id: int, qty: Decimal) -> None:
        """Do :meth:`add` with the trade's price, id and quantity already parsed."""
        if price > self._high:
            self.high, self._high = trade.price, price
        if price < self._low:
            self.low, self._low = trade.price, price
        first_id = self._first_id
        if first_id is None:
            first_id = self._first_id = int(self.first_trade_id)
        if trade_id < first_id:
            self.open, self.first_trade_id, self._first_id = trade.price, trade.trade_id, trade_id
        last_id = self._last_id
        if last_id is None:
            last_id = self._last_id = int(self.last_trade_id)
        if trade_id >= last_id:
            self.close, self.last_trade_id, self._last_id = trade.price, trade.trade_id, trade_id
        self.volume = _SUM.add(self.volume, qty)
        self.trades += 1
        if trade.ts_event > self.ts_event:
            self.ts_event = trade.ts_event

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
    """Keep the open and recently final bars of every ``(symbol, interval)``; emit bars.

    ``lateness_ns`` is how far the watermark trails the latest event time; ``horizon_ns`` how far
    behind the watermark a final bar may still be revised; ``empty`` is ``skip`` or ``carry``.
    """

    def __init__(
        self,
        venue: str,
        intervals: dict[str, int] | None = None,
        *,
        lateness_ns: int = 0,
        horizon_ns: int = 0,
        empty: str = "skip",
    ) -> None:
        if empty not in EMPTY_POLICIES:
            raise ValueError(f"empty bar policy must be one of {EMPTY_POLICIES}, got {empty!r}")
        self.venue = venue
        self.intervals = dict(BAR_INTERVALS if intervals is None else intervals)
        self.lateness_ns = lateness_ns
        self.horizon_ns = horizon_ns
        self.empty = empty
        self.max_ts_event = 0
        # (symbol, interval) -> ts_open -> bar; open = not final yet, final = within the horizon.
        self.open: dict[tuple[str, str], dict[int, OpenBar]] = {}
        self.final: dict[tuple[str, str], dict[int, OpenBar]] = {}
        # (symbol, interval) -> [ts_open, close] of the latest final bar.
        self.last_final: dict[tuple[str, str], list[Any]] = {}
        self.late_trades = 0  # too late for some interval's revision horizon
        self.revisions = 0
        self._touched: dict[tuple[str, str, int], None] = {}
        # symbol -> its open bar of every interval, while no bar of that symbol changes bucket:
        # [(interval length, ts_open, end, bar, touched key)]. Emptied whenever bars finalise.
        self._hot: dict[str, list[tuple[int, int, int, OpenBar, tuple[str, str, int]]]] = {}
        self._next_due: int | None = None

    @property
    def watermark(self) -> int:
        """Return the current watermark (ns); bars ending at or before it are final."""
        return self.max_ts_event - self.lateness_ns

    # -- events --------------------------------------------------------------------------------
    def advance(self, ts_event: int) -> list[Bar]:
        """Move the watermark with an event time; return the bars that became final."""
        if ts_event <= self.max_ts_event:
            return []
        self.max_ts_event = ts_event
        if self._next_due is None or self.watermark < self._next_due:
            return []
        return self._finalise()

    def on_trade(self, trade: Trade) -> tuple[list[Bar], list[str]]:
        """Fold ``trade`` in; return the bars it made final or revised and the intervals it was
        too late for."""
        ts_event, symbol = trade.ts_event, trade.symbol
        out = self.advance(ts_event) if ts_event > self.max_ts_event else []
        watermark = self.max_ts_event - self.lateness_ns
        hot = self._hot.get(symbol)
        if hot is not None:
            for length_ns, ts_open, end, _, _ in hot:
                if ts_event - ts_event % length_ns != ts_open or end <= watermark:
                    break
            else:  # the same buckets as this symbol's last trade: fold into its open bars
                price, trade_id = decimal_of(trade.price), int(trade.trade_id)
                qty, touched_keys = decimal_of(trade.qty), self._touched
                for _, _, _, hot_bar, hot_key in hot:
                    hot_bar.fold(trade, price, trade_id, qty)
                    touched_keys[hot_key] = None
                return out, []
        too_late: list[str] = []
        parsed: tuple[Decimal, int, Decimal] | None = None
        warm: list[tuple[int, int, int, OpenBar, tuple[str, str, int]]] = []
        for interval, length_ns in self.intervals.items():
            key = (symbol, interval)
            ts_open = ts_event - ts_event % length_ns
            end = ts_open + length_ns
            if end > watermark:
                bars = self.open.get(key)
                if bars is None:
                    bars = self.open[key] = {}
                bar = bars.get(ts_open)
                if bar is None:
                    bar = bars[ts_open] = OpenBar.first(ts_open, trade)
                    if self._next_due is None or end < self._next_due:
                        self._next_due = end
                else:
                    if parsed is None:
                        parsed = (
                            decimal_of(trade.price),
                            int(trade.trade_id),
                            decimal_of(trade.qty),
                        )
                    bar.fold(trade, *parsed)
                touched = (symbol, interval, ts_open)
                self._touched[touched] = None
                warm.append((length_ns, ts_open, end, bar, touched))
            elif end > watermark - self.horizon_ns:
                finals = self.final.setdefault(key, {})
                bar = finals.get(ts_open)
                if bar is None or bar.trades == 0:
                    bar = finals[ts_open] = OpenBar.first(ts_open, trade)
                else:
                    bar.add(trade)
                self.revisions += 1
                out.append(bar.to_bar(self.venue, trade.symbol, interval, final=True))
            else:
                too_late.append(interval)
        if len(warm) == len(self.intervals):
            self._hot[symbol] = warm
        else:
            self._hot.pop(symbol, None)
        if too_late:
            self.late_trades += 1
        return out, too_late

    def flush(self) -> list[Bar]:
        """Return every still-open bar changed since the last flush, once (``final=False``)."""
        out = []
        for symbol, interval, ts_open in self._touched:
            bar = self.open.get((symbol, interval), {}).get(ts_open)
            if bar is not None:
                out.append(bar.to_bar(self.venue, symbol, interval, final=False))
        self._touched.clear()
        return out

    # -- finalisation --------------------------------------------------------------------------
    def _finalise(self) -> list[Bar]:
        self._hot.clear()
        watermark = self.watermark
        out: list[Bar] = []
        keys = sorted(set(self.open) | (set(self.last_final) if self.empty == "carry" else set()))
        for key in keys:
            symbol, interval = key
            length_ns = self.intervals[interval]
            bars = self.open.get(key, {})
            for ts_open in sorted(t for t in bars if t + length_ns <= watermark):
                out += self._carry(key, ts_open)
                bar = bars.pop(ts_open)
                self._store_final(key, bar)
                out.append(bar.to_bar(self.venue, symbol, interval, final=True))
            if not bars:
                self.open.pop(key, None)
            out += self._carry(key, bucket_start(watermark, length_ns))
            finals = self.final.get(key, {})
            for ts_open in [t for t in finals if t + length_ns <= watermark - self.horizon_ns]:
                del finals[ts_open]
            if not finals:
                self.final.pop(key, None)
        self._next_due = self._due()
        return out

    def _carry(self, key: tuple[str, str], until: int) -> list[Bar]:
        """Emit carried empty bars for the buckets after the last final one and before ``until``."""
        if self.empty != "carry" or key not in self.last_final:
            return []
        length_ns = self.intervals[key[1]]
        last_open, close = self.last_final[key]
        start = max(last_open + length_ns, until - MAX_CARRIED * length_ns)
        out = []
        for ts_open in range(start, until, length_ns):
            bar = OpenBar.empty(ts_open, close)
            self._store_final(key, bar)
            out.append(bar.to_bar(self.venue, key[0], key[1], final=True))
        return out

    def _store_final(self, key: tuple[str, str], bar: OpenBar) -> None:
        self.final.setdefault(key, {})[bar.ts_open] = bar
        last = self.last_final.get(key)
        if last is None or bar.ts_open > last[0]:
            self.last_final[key] = [bar.ts_open, bar.close]

    def _due(self) -> int | None:
        ends = [t + self.intervals[key[1]] for key, bars in self.open.items() for t in bars]
        if self.empty == "carry":
            ends += [t + 2 * self.intervals[key[1]] for key, (t, _) in self.last_final.items()]
        return min(ends) if ends else None

    # -- repair --------------------------------------------------------------------------------
    def repair(self, limit_ns: int) -> int | None:
        """Bring back a watermark that an event time after ``limit_ns`` pushed ahead.

        Return ``None`` when the watermark is not beyond ``limit_ns``, else the number of bars
        dropped: those that open after ``limit_ns``. The newest event time becomes the newest
        one left (at most ``limit_ns``); bars that the poisoned watermark made final too early
        are open again, so later trades complete them instead of revising them.
        """
        if self.max_ts_event <= limit_ns:
            return None
        dropped = 0
        newest = 0
        for table in (self.open, self.final):
            for key in list(table):
                bars = table[key]
                for ts_open in list(bars):
                    if ts_open > limit_ns:
                        del bars[ts_open]
                        dropped += 1
                    else:
                        newest = max(newest, min(bars[ts_open].ts_event, limit_ns))
                if not bars:
                    del table[key]
        self.max_ts_event = newest
        watermark = self.watermark
        for key in list(self.final):
            length_ns, finals = self.intervals[key[1]], self.final[key]
            for ts_open in [t for t in finals if t + length_ns > watermark]:
                bar = finals.pop(ts_open)
                if bar.trades:
                    self.open.setdefault(key, {})[ts_open] = bar
            if not finals:
                del self.final[key]
        for key, (ts_open, _) in list(self.last_final.items()):
            if ts_open + self.intervals[key[1]] > watermark:
                left = self.final.get(key)
                if left:
                    newest_open = max(left)
                    self.last_final[key] = [newest_open, left[newest_open].close]
                else:
                    del self.last_final[key]
        self._touched.clear()
        self._hot.clear()
        self._next_due = self._due()
        return dropped

    # -- checkpoint ----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Return the bars, the watermark and the counts as msgpack-friendly values."""

        def rows(table: dict[tuple[str, str], dict[int, OpenBar]]) -> list[Any]:
            return [
                [symbol, interval, bar.to_state()]
                for (symbol, interval), bars in sorted(table.items())
                for _, bar in sorted(bars.items())
            ]

        return {
            "open": rows(self.open),
            "final": rows(self.final),
            "last_final": [[s, i, t, c] for (s, i), (t, c) in sorted(self.last_final.items())],
            "max_ts_event": self.max_ts_event,
            "late": self.late_trades,
            "revisions": self.revisions,
        }

    def load_state(self, data: dict[str, Any]) -> None:
        """Replace everything with what :meth:`to_state` saved."""
        self.open, self.final = {}, {}
        for table, name in ((self.open, "open"), (self.final, "final")):
            for symbol, interval, saved in data.get(name, []):
                bar = OpenBar.from_state(saved)
                table.setdefault((symbol, interval), {})[bar.ts_open] = bar
        self.last_final = {(s, i): [int(t), c] for s, i, t, c in data.get("last_final", [])}
        self.max_ts_event = int(data.get("max_ts_event", 0))
        self.late_trades = int(data["late"])
        self.revisions = int(data.get("revisions", 0))
        self._touched.clear()
        self._hot.clear()
        self._next_due = self._due()
