"""Turn simulated trades into Alpaca market-data messages and keep their history (pure).

Every simulated trade yields a trade ``t`` and a quote ``q`` around it (crypto: also an
orderbook update ``o``); minute bars ``b`` with the running daily bar ``d`` are emitted when a
minute closes. Statuses ``s``, corrections ``c``, cancel-errors ``x`` and updated bars ``u``
are produced on request (:meth:`AlpacaMarket.inject`), since the simulation has no halts or
late prints. Stocks trade in whole shares (at least one), crypto in fractions. Times are
:class:`~mock_ws.alpaca.codec.Ts`. The bars and trades kept here back the historical REST.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tickpipe.common.units import MS
from tickpipe.mock_ws.alpaca.codec import Ts
from tickpipe.mock_ws.market import SimTrade

__all__ = ["CHANNEL_OF", "AlpacaMarket", "Outgoing", "is_crypto"]

NS_PER_MIN = 60_000_000_000
NS_PER_DAY = 86_400_000_000_000
HISTORY_TRADES = 20_000
HISTORY_BARS = 2_000
#: levels per side of a crypto order-book snapshot (Alpaca, "Real-time crypto data",
#: orderbooks: the first message of a subscription is the whole book, then changes)
BOOK_LEVELS = 40

#: Subscription channel of each message type.
CHANNEL_OF = {
    "t": "trades",
    "q": "quotes",
    "o": "orderbooks",
    "b": "bars",
    "d": "dailyBars",
    "u": "updatedBars",
    "s": "statuses",
    "c": "corrections",
    "x": "cancelErrors",
}


def is_crypto(symbol: str) -> bool:
    """Return whether ``symbol`` is a crypto pair (``BTC/USD``)."""
    return "/" in symbol


@dataclass(frozen=True)
class Outgoing:
    """One message with its routing: subscription channel and symbol."""

    channel: str
    symbol: str
    message: dict[str, Any]
    trade: SimTrade | None = None


@dataclass
class _Bar:
    start_ns: int
    o: float
    h: float
    low: float
    c: float
    v: float = 0.0
    n: int = 0
    notional: float = 0.0

    def add(self, price: float, size: float) -> None:
        self.h = max(self.h, price)
        self.low = min(self.low, price)
        self.c = price
        self.v += size
        self.n += 1
        self.notional += price * size

    def fields(self) -> dict[str, Any]:
        vw = self.notional / self.v if self.v else self.c
        volume = round(float(self.v), 9)
        v: float | int = int(volume) if volume.is_integer() else volume  # whole stock shares
        return {
            "o": self.o,
            "h": self.h,
            "l": self.low,
            "c": self.c,
            "v": v,
            "t": Ts(self.start_ns),
            "n": self.n,
            "vw": round(vw, 6),
        }


@dataclass
class _SymbolFeed:
    symbol: str
    minute: _Bar | None = None
    day: _Bar | None = None
    trades: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_TRADES))
    bars: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY_BARS))
    last_price: float | None = None
    quote: dict[str, Any] | None = None


class AlpacaMarket:
    """Build the message flow of every simulated symbol; see the module docstring."""

    def __init__(self, symbols: tuple[str, ...]) -> None:
        self._feeds = {s: _SymbolFeed(s) for s in symbols}

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._feeds)

    def size_of(self, trade: SimTrade) -> float | int:
        """Return the Alpaca size of a simulated trade: whole shares, or crypto units."""
        qty = Decimal(trade.qty)
        if is_crypto(trade.symbol):
            return float(qty)
        return max(1, int(qty))

    def on_trades(self, trades: list[SimTrade], now_ns: int) -> list[Outgoing]:
        """Return the messages for new trades and for every minute closed by ``now_ns``."""
        out: list[Outgoing] = []
        for trade in trades:
            feed = self._feeds.get(trade.symbol)
            if feed is None:
                continue
            trade_ns = trade.trade_time_ms * MS
            out.extend(self._close_minute(feed, trade_ns))
            price, size = float(Decimal(trade.price)), self.size_of(trade)
            message = self._trade_message(trade, price, size)
            feed.trades.append(message)
            feed.last_price = price
            out.append(Outgoing("trades", trade.symbol, message, trade))
            feed.quote = self._quote(trade, price, trade_ns)
            out.append(Outgoing("quotes", trade.symbol, feed.quote))
            if is_crypto(trade.symbol):
                book = self._book(trade.symbol, price, trade.trade_id, trade_ns, reset=False)
                out.append(Outgoing("orderbooks", trade.symbol, book))
            self._add_to_bars(feed, trade_ns, price, size)
        for feed in self._feeds.values():
            out.extend(self._close_minute(feed, now_ns))
        return out

    def orderbook_snapshot(self, symbol: str, now_ns: int) -> dict[str, Any] | None:
        """Return a full-book ``o`` message (``r: true``) for a crypto symbol with a price."""
        feed = self._feeds.get(symbol)
        if feed is None or feed.last_price is None or not is_crypto(symbol):
            return None
        return self._book(symbol, feed.last_price, 0, now_ns, reset=True)

    def inject(self, kind: str, symbol: str, now_ns: int) -> Outgoing:
        """Return a status, correction, cancel-error or updated-bar message for ``symbol``."""
        feed = self._feeds.get(symbol)
        if feed is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        last = feed.trades[-1] if feed.trades else None
        message: dict[str, Any]
        if kind == "status":
            message = {
                "T": "s",
                "S": symbol,
                "sc": "H",
                "sm": "Trading Halt",
                "rc": "T12",
                "rm": "Trading Halted; For information requested by the venue",
                "t": Ts(now_ns),
                "z": "C",
            }
        elif kind in ("correction", "cancel_error"):
            if last is None or is_crypto(symbol):
                raise ValueError(f"{kind} needs a stock trade for {symbol}")
            if kind == "correction":
                message = {
                    "T": "c",
                    "S": symbol,
                    "x": last["x"],
                    "oi": last["i"],
                    "op": last["p"],
                    "os": last["s"],
                    "oc": last["c"],
                    "ci": last["i"] + 1_000_000_000,
                    "cp": round(last["p"] + 0.01, 2),
                    "cs": last["s"],
                    "cc": last["c"],
                    "z": "C",
                    "t": Ts(now_ns),
                }
            else:
                message = {
                    "T": "x",
                    "S": symbol,
                    "i": last["i"],
                    "x": last["x"],
                    "p": last["p"],
                    "s": last["s"],
                    "a": "C",
                    "z": "C",
                    "t": Ts(now_ns),
                }
        elif kind == "updated_bar":
            if not feed.bars:
                raise ValueError(f"no closed bar yet for {symbol}")
            bar = dict(feed.bars[-1])
            bar["v"] = bar["v"] + 1
            bar["n"] = bar["n"] + 1
            feed.bars[-1] = bar
            message = {"T": "u", "S": symbol, **bar}
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return Outgoing(CHANNEL_OF[message["T"]], symbol, message)

    def latest(self, symbol: str, kind: str) -> dict[str, Any] | None:
        """Return the latest ``trade``, ``quote``, minute ``bar`` or ``day`` bar (None: none)."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return None
        if kind == "trade":
            return feed.trades[-1] if feed.trades else None
        if kind == "quote":
            return feed.quote
        if kind == "bar":
            return feed.bars[-1] if feed.bars else (feed.minute.fields() if feed.minute else None)
        return feed.day.fields() if feed.day is not None else None

    def history_trades(self, symbol: str) -> list[dict[str, Any]]:
        """Return the kept trade messages of ``symbol`` (oldest first)."""
        feed = self._feeds.get(symbol)
        return list(feed.trades) if feed else []

    def history_bars(self, symbol: str) -> list[dict[str, Any]]:
        """Return the closed minute bars of ``symbol`` and then the running one."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return []
        running = [feed.minute.fields()] if feed.minute is not None else []
        return [*feed.bars, *running]

    # ---- internals --------------------------------------------------------------------------

    def _trade_message(self, trade: SimTrade, price: float, size: float | int) -> dict[str, Any]:
        t = Ts(trade.trade_time_ms * MS)
        if is_crypto(trade.symbol):
            taker = "S" if trade.buyer_is_maker else "B"
            return {"T": "t", "S": trade.symbol, "p": price, "s": size, "t": t,
                    "i": trade.trade_id, "tks": taker}  # fmt: skip
        return {"T": "t", "i": trade.trade_id, "S": trade.symbol, "x": "V", "p": price,
                "s": size, "t": t, "c": ["@"], "z": "C"}  # fmt: skip

    def _quote(self, trade: SimTrade, price: float, trade_ns: int) -> dict[str, Any]:
        half = max(0.01, round(price * 0.0001, 2))
        bid, ask = round(price - half, 2), round(price + half, 2)
        t = Ts(trade_ns)
        if is_crypto(trade.symbol):
            return {"T": "q", "S": trade.symbol, "bp": bid, "bs": 0.5 + trade.trade_id % 7 / 10,
                    "ap": ask, "as": 0.4 + trade.trade_id % 5 / 10, "t": t}  # fmt: skip
        return {"T": "q", "S": trade.symbol, "bx": "V", "bp": bid, "bs": 1 + trade.trade_id % 5,
                "ax": "V", "ap": ask, "as": 1 + trade.trade_id % 3, "c": ["R"], "z": "C",
                "t": t}  # fmt: skip

    def _book(
        self, symbol: str, price: float, seq: int, now_ns: int, *, reset: bool
    ) -> dict[str, Any]:
        half = max(0.01, round(price * 0.0001, 2))
        levels = BOOK_LEVELS if reset else 1
        bids = [{"p": round(price - half * (1 + i), 2), "s": round(0.1 + (seq + i) % 9 / 10, 4)}
                for i in range(levels)]  # fmt: skip
        asks = [{"p": round(price + half * (1 + i), 2), "s": round(0.1 + (seq + 2 * i) % 7 / 10, 4)}
                for i in range(levels)]  # fmt: skip
        return {"T": "o", "S": symbol, "t": Ts(now_ns), "b": bids, "a": asks, "r": reset}

    def _add_to_bars(self, feed: _SymbolFeed, trade_ns: int, price: float, size: float) -> None:
        minute_ns = trade_ns - trade_ns % NS_PER_MIN
        day_ns = trade_ns - trade_ns % NS_PER_DAY
        if feed.minute is None:
            feed.minute = _Bar(minute_ns, price, price, price, price)
        if feed.day is None or feed.day.start_ns != day_ns:
            feed.day = _Bar(day_ns, price, price, price, price)
        feed.minute.add(price, size)
        feed.day.add(price, size)

    def _close_minute(self, feed: _SymbolFeed, now_ns: int) -> list[Outgoing]:
        bar = feed.minute
        if bar is None or now_ns < bar.start_ns + NS_PER_MIN:
            return []
        feed.minute = None
        fields = bar.fields()
        feed.bars.append(fields)
        out = [Outgoing("bars", feed.symbol, {"T": "b", "S": feed.symbol, **fields})]
        if feed.day is not None:
            out.append(
                Outgoing(
                    "dailyBars", feed.symbol, {"T": "d", "S": feed.symbol, **feed.day.fields()}
                )
            )
        return out
