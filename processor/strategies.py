"""Turn market events into trading decisions with checkpointable strategy rules (pure, no I/O).

A strategy declares the inputs it needs in :attr:`Strategy.inputs` (:data:`INPUTS`) and sees
those events of its partition, in raw-stream order, once (duplicates are removed before it):
trades, quotes, top-of-book changes, final bars, revised bars, a timer on event time, and its
own orders' updates, fills and positions, and the venue's instrument filters
(:mod:`processor.own_orders`). Each hook answers with
a list of :class:`SignalSpec`. A strategy must be deterministic: the same
events in the same order give the same specs, whatever the batch boundaries, and its whole
state must survive :meth:`Strategy.to_state` / :meth:`Strategy.load_state` (msgpack-friendly
values), because the processor saves it in the partition checkpoint and a takeover resumes
from there. The processor turns specs into :class:`common.schema.Signal` events with
deterministic ids. A strategy's own settings are a dataclass named by :attr:`Strategy.params`
(see :mod:`processor.plugins`).
"""

from __future__ import annotations

import decimal
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from tickpipe.common.decimals import decimal_of
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.schema import Bar, OrderTerms, OrderUpdate, Quote, Trade
from tickpipe.common.settings import ANY_SYMBOL, Settings, order_quantities
from tickpipe.processor.records import BookTop

if TYPE_CHECKING:
    from tickpipe.processor.own_orders import OwnFill, OwnPosition

__all__ = [
    "BARS",
    "BAR_REVISIONS",
    "BOOK",
    "INPUTS",
    "INSTRUMENTS",
    "ORDERS",
    "QUOTES",
    "STRATEGIES",
    "TIMER",
    "TRADES",
    "RapidMove",
    "SignalSpec",
    "Strategy",
    "ThresholdCross",
    "ThresholdParams",
]

_CTX = decimal.Context(prec=40)
_BPS = Decimal(10_000)
TRADES = "trades"
QUOTES = "quotes"
BOOK = "book"
BARS = "bars"
BAR_REVISIONS = "bar_revisions"
TIMER = "timer"
#: The strategy's own order updates, fills and positions (:mod:`processor.own_orders`).
ORDERS = "orders"
#: The venue's instrument filters as the trader loaded them (:mod:`processor.own_orders`).
INSTRUMENTS = "instruments"
#: The inputs a strategy may declare; the processor routes only the declared ones to it.
INPUTS = frozenset({TRADES, QUOTES, BOOK, BARS, BAR_REVISIONS, TIMER, ORDERS, INSTRUMENTS})

ABOVE = "above"
BELOW = "below"


@dataclass(frozen=True, slots=True)
class SignalSpec(OrderTerms):
    """What a strategy wants: ``action`` ``place`` or ``cancel``, side ``buy`` or ``sell``.

    The order's terms are the keyword-only fields of :class:`common.schema.OrderTerms`:
    ``order_type`` ``MARKET``, ``LIMIT``, ``STOP``, ``STOP_LIMIT``, ``TAKE_PROFIT`` or
    ``TAKE_PROFIT_LIMIT`` (empty: the deployment's
    ``TICKPIPE_ORDER_TYPE``), ``time_in_force`` ``GTC``/``IOC``/``FOK`` and ``post_only`` for a
    LIMIT order at ``price``, ``quote_qty`` for a MARKET order that names the quote amount to
    spend or receive (``qty`` empty), ``stop_price`` for a stop order's trigger (see
    :mod:`common.order_spec`), ``replaces`` for a working order of this strategy (its client
    order id, as :meth:`on_order_update` tells it) to be replaced by this one. A spec that
    breaks those rules is the strategy's failure. The signal built from it carries the same
    terms (:func:`common.schema.order_terms`).
    """

    symbol: str
    side: str
    qty: str
    price: str
    reason: str
    action: str = "place"
    #: Comma-separated raw entry ids of the events behind the decision; empty = the trade's own.
    cause: str = ""


class Strategy(ABC):
    """A deterministic rule from market events to signal specs, with checkpointable state.

    Every hook gets ``ts_now``, the processing time, for stamps only: a decision that depended
    on it would make the outputs differ between a first run and a replay. Hooks of inputs not
    declared in :attr:`inputs` are never called.
    """

    #: Stable name (lower case letters, digits, ``_``); part of every signal id and of the
    #: settings namespace ``TICKPIPE_STRATEGY_<NAME>_<KEY>``: never rename one in use.
    name: ClassVar[str]
    #: The inputs routed to this strategy (a subset of :data:`INPUTS`).
    inputs: ClassVar[frozenset[str]] = frozenset({TRADES})
    #: A dataclass of this strategy's own settings, or ``None`` when it has none.
    params: ClassVar[type[Any] | None] = None
    #: With ``timer`` declared: :meth:`on_timer` runs once per interval of event time.
    timer_interval_ms: ClassVar[int] = 0

    @classmethod
    def create(cls, settings: Settings, params: Any) -> Strategy:
        """Build the strategy from the deployment's settings and its own ``params``.

        The default calls ``cls(params)`` when the strategy declares :attr:`params`, else ``cls()``.
        """
        factory: Any = cls  # a subclass's own constructor takes the params
        built: Strategy = factory(params) if cls.params is not None else factory()
        return built

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        """Return the signals this trade causes (usually none)."""
        return []

    def on_quote(self, quote: Quote, ts_now: int) -> list[SignalSpec]:
        """Return the signals this best bid/ask update causes."""
        return []

    def on_book(self, top: BookTop, ts_now: int) -> list[SignalSpec]:
        """Return the signals this order-book change (top levels after the update) causes."""
        return []

    def on_bar(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        """Return the signals this newly final bar causes."""
        return []

    def on_bar_revision(self, bar: Bar, ts_now: int) -> list[SignalSpec]:
        """Return the signals a revision of an already final bar (late trade) causes."""
        return []

    def on_timer(self, ts_event: int, ts_now: int) -> list[SignalSpec]:
        """Return the signals due at ``ts_event``, a multiple of :attr:`timer_interval_ms`."""
        return []

    def on_order_update(self, update: OrderUpdate, ts_now: int) -> list[SignalSpec]:
        """Return the signals a change of one of this strategy's own orders causes."""
        return []

    def on_fill(self, fill: OwnFill, ts_now: int) -> list[SignalSpec]:
        """Return the signals a fill of one of this strategy's own orders causes."""
        return []

    def on_position(self, position: OwnPosition, ts_now: int) -> list[SignalSpec]:
        """Return the signals this strategy's new position in a symbol (after a fill) causes."""
        return []

    def on_instruments(self, filters: InstrumentFilters, ts_now: int) -> list[SignalSpec]:
        """Take note of a symbol's instrument filters (tick, step, minimum notional...)."""
        return []

    @abstractmethod
    def to_state(self) -> Any:
        """Return the state as msgpack-friendly values."""

    @abstractmethod
    def load_state(self, data: Any) -> None:
        """Replace the state with one returned by :meth:`to_state`."""

    def forget_after(self, ts_event: int) -> None:
        """Forget what events after ``ts_event`` left (a poisoned checkpoint being repaired).

        Strategies that keep no event times have nothing to forget.
        """
        return None  # an optional hook: most strategies keep no event times


@dataclass(frozen=True)
class ThresholdParams:
    """``TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS``: 0 (default) = MARKET entries only."""

    passive_bps: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.passive_bps < _BPS:
            raise ValueError(
                "TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS must be at least 0 and below 10000"
            )


class ThresholdCross(Strategy):
    """Buy when the price crosses up through a level, sell when it crosses down, with hysteresis.

    Per symbol the level comes from ``levels`` or, when absent, is the first trade's price. The
    state starts unknown; it becomes ``above`` at ``price >= level * (1 + h)`` and ``below`` at
    ``price <= level * (1 - h)``, with ``h = hysteresis_bps / 10000``; prices inside the band keep
    the state. Going below -> above emits a buy, above -> below a sell; the first state reached
    emits nothing.

    Each order has the symbol's size (``order_qty``: one size, or symbol -> size with ``*`` for
    the others). With ``passive_bps`` above 0 each crossing is a MARKET entry followed by a
    passive LIMIT GTC order on the same side, ``passive_bps`` behind the crossing price (a buy's
    bid below it, a sell's offer above it): it adds to the position if the market comes back,
    and rests while the market runs away, until a rapid move's cancel (:class:`RapidMove`) takes
    it off the book.
    """

    name: ClassVar[str] = "threshold_cross"
    params: ClassVar[type[Any] | None] = ThresholdParams

    @classmethod
    def create(cls, settings: Settings, params: Any) -> Strategy:
        passive = params.passive_bps if params is not None else Decimal(0)
        return cls(
            dict(settings.thresholds),
            hysteresis_bps=settings.hysteresis_bps,
            order_qty=order_quantities(settings.order_qty),
            passive_bps=passive,
        )

    def __init__(
        self,
        levels: Mapping[str, str],
        *,
        hysteresis_bps: str,
        order_qty: str | Mapping[str, str],
        passive_bps: Decimal = Decimal(0),
    ) -> None:
        self.levels = dict(levels)
        self.hysteresis_bps = hysteresis_bps
        sizes = {ANY_SYMBOL: order_qty} if isinstance(order_qty, str) else dict(order_qty)
        self.order_qty = sizes
        self.passive_bps = passive_bps
        self._passive = _CTX.divide(passive_bps, _BPS)
        self._h = _CTX.divide(Decimal(hysteresis_bps), _BPS)
        # symbol -> [level, state]; state is "" (unknown), ABOVE or BELOW.
        self.symbols: dict[str, list[str]] = {}
        self._bands: dict[str, tuple[Decimal, Decimal]] = {}

    def _band(self, symbol: str, level: str) -> tuple[Decimal, Decimal]:
        band = self._bands.get(symbol)
        if band is None:
            value = Decimal(level)
            band = (
                _CTX.multiply(value, _CTX.add(1, self._h)),
                _CTX.multiply(value, _CTX.subtract(1, self._h)),
            )
            self._bands[symbol] = band
        return band

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        configured = self.levels.get(trade.symbol)
        entry = self.symbols.get(trade.symbol)
        if entry is None or (configured is not None and entry[0] != configured):
            # A new symbol, or a level changed in the configuration since the checkpoint.
            entry = [configured or trade.price, ""]
            self.symbols[trade.symbol] = entry
            self._bands.pop(trade.symbol, None)
        level, state = entry
        upper, lower = self._band(trade.symbol, level)
        price = decimal_of(trade.price)
        if price >= upper:
            new_state = ABOVE
        elif price <= lower:
            new_state = BELOW
        else:
            return []
        entry[1] = new_state
        if state == BELOW and new_state == ABOVE:
            return self._spec(trade, "buy", f"crossed above {level} (+{self.hysteresis_bps} bps)")
        if state == ABOVE and new_state == BELOW:
            return self._spec(trade, "sell", f"crossed below {level} (-{self.hysteresis_bps} bps)")
        return []

    def _spec(self, trade: Trade, side: str, why: str) -> list[SignalSpec]:
        qty = self.order_qty.get(trade.symbol) or self.order_qty[ANY_SYMBOL]
        entry = SignalSpec(
            symbol=trade.symbol,
            side=side,
            qty=qty,
            price=trade.price,
            reason=f"price {trade.price} {why}",
        )
        if self._passive <= 0:
            return [entry]
        price = decimal_of(trade.price)
        behind = _CTX.subtract(1, self._passive) if side == "buy" else _CTX.add(1, self._passive)
        # The crossing price's decimals, rounded away from the market (the trader then rounds
        # to the venue's tick the same way).
        away = decimal.ROUND_FLOOR if side == "buy" else decimal.ROUND_CEILING
        target = _CTX.multiply(price, behind).quantize(price, rounding=away)
        passive = SignalSpec(
            symbol=trade.symbol,
            side=side,
            qty=qty,
            price=f"{target.normalize():f}",
            reason=(
                f"passive {side} {self.passive_bps} bps {'below' if side == 'buy' else 'above'} "
                f"the crossing price {trade.price}: resting LIMIT"
            ),
            order_type="LIMIT",
            time_in_force="GTC",
        )
        return [entry, passive]

    def to_state(self) -> dict[str, list[str]]:
        return {symbol: list(entry) for symbol, entry in self.symbols.items()}

    def load_state(self, data: Any) -> None:
        self.symbols = {str(symbol): [str(e[0]), str(e[1])] for symbol, e in dict(data).items()}
        self._bands.clear()


class RapidMove(Strategy):
    """Cancel a symbol's working orders when its price moves ``pct`` % within ``window_ms``.

    Per symbol it keeps the trades of the last ``window_ms`` of exchange time (monotonic queues
    of their highs and lows). When the newest price is ``pct`` % or more above the window's low
    (or below its high) it emits one ``cancel`` signal whose cause names the two trades' raw
    entries, then starts a fresh window at the newest trade so one move signals once.
    """

    name: ClassVar[str] = "rapid_move"

    @classmethod
    def create(cls, settings: Settings, params: Any) -> Strategy:
        return cls(pct=settings.rapid_move_pct, window_ms=settings.rapid_move_window_ms)

    def __init__(self, *, pct: str, window_ms: int) -> None:
        self.pct = pct
        self.window_ns = window_ms * 1_000_000
        self._ratio = _CTX.divide(Decimal(pct), Decimal(100))
        # symbol -> (highs, lows): deques of [ts_event, price, src], prices monotonic.
        self.windows: dict[str, tuple[deque[list[Any]], deque[list[Any]]]] = {}

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        if self._ratio <= 0:
            return []  # a 0 % move would fire on every trade: treated as switched off
        highs, lows = self.windows.setdefault(trade.symbol, (deque(), deque()))
        price = decimal_of(trade.price)
        item = [trade.ts_event, trade.price, trade.src]
        while highs and decimal_of(highs[-1][1]) <= price:
            highs.pop()
        while lows and decimal_of(lows[-1][1]) >= price:
            lows.pop()
        highs.append(item)
        lows.append(item)
        oldest = trade.ts_event - self.window_ns
        for queue in (highs, lows):
            while queue[0][0] < oldest:
                queue.popleft()
        low, high = lows[0], highs[0]
        low_price, high_price = decimal_of(low[1]), decimal_of(high[1])
        if low_price > 0 and price - low_price >= _CTX.multiply(low_price, self._ratio):
            return self._fire(trade, "up", low, highs, lows)
        if high_price > 0 and high_price - price >= _CTX.multiply(high_price, self._ratio):
            return self._fire(trade, "down", high, highs, lows)
        return []

    def _fire(
        self,
        trade: Trade,
        direction: str,
        start: list[Any],
        highs: deque[list[Any]],
        lows: deque[list[Any]],
    ) -> list[SignalSpec]:
        window_ms = self.window_ns // 1_000_000
        reason = (
            f"price moved {direction} from {start[1]} to {trade.price} "
            f"(>= {self.pct} % within {window_ms} ms): cancel working orders"
        )
        item = [trade.ts_event, trade.price, trade.src]
        highs.clear()
        lows.clear()
        highs.append(item)
        lows.append(list(item))
        return [
            SignalSpec(
                symbol=trade.symbol,
                side="sell" if direction == "down" else "buy",
                qty="0",
                price=trade.price,
                reason=reason,
                action="cancel",
                cause=f"{start[2]},{trade.src}",
            )
        ]

    def forget_after(self, ts_event: int) -> None:
        for highs, lows in self.windows.values():
            for queue in (highs, lows):
                kept = [item for item in queue if item[0] <= ts_event]
                queue.clear()
                queue.extend(kept)

    def to_state(self) -> dict[str, list[list[list[Any]]]]:
        return {
            symbol: [[list(i) for i in highs], [list(i) for i in lows]]
            for symbol, (highs, lows) in self.windows.items()
        }

    def load_state(self, data: Any) -> None:
        self.windows = {
            str(symbol): (
                deque([int(t), str(p), str(s)] for t, p, s in queues[0]),
                deque([int(t), str(p), str(s)] for t, p, s in queues[1]),
            )
            for symbol, queues in dict(data).items()
        }


#: The built-in strategies by name; entry points and ``module:Class`` paths extend this table.
STRATEGIES: dict[str, type[Strategy]] = {
    ThresholdCross.name: ThresholdCross,
    RapidMove.name: RapidMove,
}
