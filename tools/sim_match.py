"""Run the mock exchange's matching engine against a recorded market (pure, no I/O).

A backtest has no simulated market: its prices, trades and order books are the recording's.
This module gives :class:`mock_ws.matching.MatchingEngine` that market through the two
interfaces it already reads, so an order is checked, matched and reported by the very code the
mock exchange runs live:

* :class:`RecordedMarket` stands in for :class:`mock_ws.market.MarketSim`: the listed symbols,
  the last recorded trade price, and the engine's own fills (numbered ``sim1``, ``sim2`` ...).
* :class:`RecordedBook` stands in for :class:`mock_ws.book.SimBook`: ``take`` walks the levels
  of the book the processor rebuilt from the recording (snapshot + diffs,
  :class:`processor.books.OrderBook`), in the engine's units (price ticks of 0.01, quantity
  units of 0.00001). What a simulated order took is taken out of a level until the recording
  updates that level again (the recording knows nothing of the backtest's orders; this keeps
  two orders from taking the same liquidity). Without a live book (before the first snapshot,
  after a gap, a capture without depth) it answers as the engine does without a book: the last
  trade price, any size. The best bid and ask of a quote (``bookTicker``) newer than the book
  (a higher update id) stand in for the book's top: depth diffs come every 100 ms, quotes at
  once, so levels the quote has moved past are taken as gone and its levels have its sizes.

:class:`RecordedEngine` adds to the engine what a recorded market needs: a MARKET order walks
the book (what the book cannot fill expires, as on the venue), and a resting order has a
**queue position**: the visible quantity at its price on its side when it arrives (0 when it
improves on the best price). Recorded trades at its price first consume that queue, and only
the quantity beyond it fills the order (partially, as a maker, at its price); a level that
shrinks below the queue ahead shortens it to the level's size (cancellations are taken from
behind first: the conservative choice); a recorded trade *through* its price (below a buy,
above a sell) means the level was swept and fills what is left of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from tickpipe.common.schema import Quote
from tickpipe.mock_ws.market import QTY_UNITS, TICKS_PER_UNIT, SimTrade
from tickpipe.mock_ws.matching import MatchingEngine, Order, split_symbol
from tickpipe.processor.books import OrderBook

__all__ = ["RecordedBook", "RecordedEngine", "RecordedMarket"]

Event = dict[str, Any]
_TICKS, _UNITS = Decimal(TICKS_PER_UNIT), Decimal(QTY_UNITS)
#: What an account holds of every asset: enough that no order is refused for its balance.
AMPLE = Decimal(10) ** 15


def _ticks(price: str | Decimal, *, up: bool) -> int:
    """A price in engine ticks; a price between ticks goes to the one worse for the taker."""
    return int((Decimal(price) * _TICKS).to_integral_value(ROUND_CEILING if up else ROUND_FLOOR))


def _units(qty: str | Decimal) -> int:
    return int((Decimal(qty) * _UNITS).to_integral_value(ROUND_FLOOR))


class RecordedMarket:
    """The part of :class:`mock_ws.market.MarketSim` the engine reads, from a recording."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols: tuple[str, ...] = tuple(s.upper() for s in symbols)
        self.last: dict[str, str] = {}
        self.next_trade_id = 1

    def has_symbol(self, symbol: str) -> bool:
        return symbol.upper() in self.symbols

    def last_price(self, symbol: str) -> str:
        return self.last.get(symbol, "0")

    def record_fill(
        self, symbol: str, qty: str, buyer_is_maker: bool, now_ns: int, price: str | None = None
    ) -> SimTrade:
        """Number one of the engine's own fills; it does not move the recorded price."""
        trade = SimTrade(symbol, self.next_trade_id, price or self.last_price(symbol), qty,
                         now_ns // 1_000_000, buyer_is_maker)  # fmt: skip
        self.next_trade_id += 1
        return trade


class RecordedBook:
    """One symbol's recorded book behind :meth:`mock_ws.book.SimBook.take`'s interface."""

    def __init__(self, symbol: str, market: RecordedMarket) -> None:
        self.symbol = symbol
        self.market = market
        self.book: OrderBook | None = None
        #: the newest best bid and ask (bookTicker); it leads the depth book by up to 100 ms
        self.quote: Quote | None = None
        #: (side "a"/"b", price text) -> (the recorded quantity when taken, units taken)
        self.taken: dict[tuple[str, str], tuple[str, int]] = {}
        self.without_book = 0

    def _best(self, asks: bool) -> tuple[float, str, str] | None:
        """The side's best level from a quote newer than the book: (sort key, price, qty)."""
        quote, book = self.quote, self.book
        if quote is None or book is None or not quote.update_id.isdigit():
            return None
        if int(quote.update_id) <= book.last_update_id:
            return None  # the book has caught up with it
        price, qty = (quote.ask_price, quote.ask_qty) if asks else (quote.bid_price, quote.bid_qty)
        return (float(price) if asks else -float(price)), price, qty

    def _levels(self, asks: bool) -> list[tuple[str, str]]:
        """The side's levels best first (with a newer quote's best level on top)."""
        assert self.book is not None
        side = self.book.asks if asks else self.book.bids
        best = self._best(asks)
        keys = sorted(side.levels)
        if best is None:
            return [side.levels[key] for key in keys]
        # Levels better than the quoted best are gone; the quoted level has the quote's size.
        return [(best[1], best[2])] + [side.levels[k] for k in keys if k > best[0]]

    def _left(self, name: str, price: str, qty: str) -> int:
        units = _units(qty)
        seen = self.taken.get((name, price))
        if seen is None:
            return units
        if seen[0] != qty:  # the recording updated the level since: its quantity stands
            del self.taken[(name, price)]
            return units
        return max(0, units - seen[1])

    def visible(self, buy: bool, price: Decimal) -> Decimal:
        """The quantity on the bid (``buy``) or ask side at ``price`` now (0 without a book)."""
        if self.book is None:
            return Decimal(0)
        side = self.book.bids if buy else self.book.asks
        key = (-1.0 if buy else 1.0) * float(price)
        best = self._best(asks=not buy)
        found = side.levels.get(key)
        if best is not None and key <= best[0]:
            found = (best[1], best[2]) if key == best[0] else None
        if found is None:
            return Decimal(0)
        return Decimal(self._left("b" if buy else "a", found[0], found[1])) / _UNITS

    def take(
        self, buy: bool, limit_ticks: int, qty_units: int, *, dry_run: bool = False
    ) -> list[tuple[int, int]]:
        """Consume the levels a taker crosses up to ``limit_ticks``; return (ticks, units)."""
        if self.book is None:  # as the engine does without a book: the last price, any size
            last = self.market.last.get(self.symbol)
            if last is None:
                return []
            ticks = _ticks(last, up=buy)
            crosses = ticks <= limit_ticks if buy else ticks >= limit_ticks
            if crosses and not dry_run:
                self.without_book += 1
            return [(ticks, qty_units)] if crosses else []
        name = "a" if buy else "b"
        fills: list[tuple[int, int]] = []
        left = qty_units
        for price, qty in self._levels(asks=buy):
            ticks = _ticks(price, up=buy)
            if left <= 0 or (ticks > limit_ticks if buy else ticks < limit_ticks):
                break
            got = min(left, self._left(name, price, qty))
            if got <= 0:
                continue
            fills.append((ticks, got))
            left -= got
            if not dry_run:
                before = self.taken.get((name, price), (qty, 0))[1]
                self.taken[(name, price)] = (qty, before + got)
        return fills


class RecordedEngine(MatchingEngine):
    """The mock's engine on a recorded market; see the module docstring for what it adds."""

    def __init__(self, symbols: Iterable[str], *, commission_rate: Decimal) -> None:
        market = RecordedMarket(())
        self.recorded: dict[str, RecordedBook] = {}
        super().__init__(
            market,  # type: ignore[arg-type]  # the engine reads only what RecordedMarket has
            commission_rate=str(commission_rate),
            books=self.recorded,  # type: ignore[arg-type]  # SimBook's take, on a recording
        )
        # The engine keeps a dict of its own when given an empty one: share ours.
        self.books = self.recorded  # type: ignore[assignment]
        self.recorded_market = market
        #: order id -> the quantity ahead of the resting order at its price
        self.ahead: dict[int, Decimal] = {}
        for symbol in symbols:
            self.list_symbol(symbol)

    def list_symbol(self, symbol: str) -> None:
        """List ``symbol`` (once), with an ample balance of both its assets."""
        if symbol in self.recorded:
            return
        market = self.recorded_market
        market.symbols = (*market.symbols, symbol)
        self.recorded[symbol] = RecordedBook(symbol, market)
        for asset in split_symbol(symbol):
            self.balances.setdefault(asset, AMPLE)

    def execute(self, order: Order, now_ns: int) -> list[Event]:
        """Execute an accepted order; a MARKET order walks the recorded book."""
        if order.type != "MARKET":
            events = super().execute(order, now_ns)
            if order.is_open and order.working:
                book = self.recorded[order.symbol]
                self.ahead[order.order_id] = book.visible(order.side == "BUY", order.price)
            return events
        book = self.recorded[order.symbol]
        buy = order.side == "BUY"
        limit = 1 << 62 if buy else 0
        for ticks, units in book.take(buy, limit, _units(order.remaining)):
            self._fill(order, Decimal(ticks) / _TICKS, Decimal(units) / _UNITS, now_ns,
                       maker=False)  # fmt: skip
        if order.remaining > 0:
            self._close(order, "EXPIRED", now_ns)  # the book ran dry: the rest expires
        return self._flush(order, now_ns, force=True)

    def on_recorded_trade(
        self, symbol: str, price: Decimal, qty: Decimal, now_ns: int
    ) -> list[Event]:
        """Let a recorded trade reach the resting orders of ``symbol`` (queue first)."""
        self.list_symbol(symbol)
        self.recorded_market.last[symbol] = format(price, "f")
        self._own_trades.clear()  # the engine's own prints never come back here as trades
        events: list[Event] = []
        spare = qty
        for order in self.open_orders(symbol):
            if not order.working or order.type == "MARKET":
                continue
            buy = order.side == "BUY"
            through = price < order.price if buy else price > order.price
            if through:
                fill = order.remaining
            elif price == order.price:
                ahead = self.ahead.get(order.order_id, Decimal(0))
                self.ahead[order.order_id] = max(Decimal(0), ahead - qty)
                fill = min(order.remaining, max(Decimal(0), qty - ahead), spare)
                spare -= fill
            else:
                continue
            if fill > 0:
                self._fill(order, order.price, fill, now_ns, maker=True)
                events.extend(self._flush(order, now_ns))
        return events

    def sync_queues(self, symbol: str) -> None:
        """Shorten the queue ahead of each resting order to its level's size now."""
        book = self.recorded.get(symbol)
        if book is None or book.book is None:
            return
        for order in self.open_orders(symbol):
            if order.order_id in self.ahead:
                level = book.visible(order.side == "BUY", order.price)
                self.ahead[order.order_id] = min(self.ahead[order.order_id], level)

    def set_book(self, symbol: str, book: OrderBook | None) -> None:
        """Point ``symbol``'s book at the processor's live one (``None``: none live)."""
        self.list_symbol(symbol)
        self.recorded[symbol].book = book

    def forget(self, done: Callable[[Order], bool]) -> None:
        """Drop the queue positions of orders that no longer rest."""
        for order_id in [i for i in self.ahead if done(self._by_id[i])]:
            del self.ahead[order_id]
