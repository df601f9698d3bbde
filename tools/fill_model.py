"""Fill a backtest's orders with the mock's matching engine against the recorded book (pure).

The simulated venue is the mock exchange's own :class:`mock_ws.matching.MatchingEngine`, run on
the recording (:mod:`tools.sim_match`): its order checks, LIMIT matching, IOC/FOK/LIMIT_MAKER
rules, commissions and execution reports are the ones the mock applies live. The assumptions,
stated once (``tickpipe backtest`` prints them with its summary):

* **The trader's shaping first.** A signal becomes the trader's intent
  (:func:`trader.intent_rules.build_intent`), is refused as the trader refuses what Binance
  cannot do (:func:`venues.binance.orders.order_refusal`), then shaped by the trader's own
  filter code (:class:`trader.instruments.Instruments`) with the venue's instrument filters
  (``--filters``: an ``exchangeInfo`` answer saved to a file; default: the mock's
  ``exchangeInfo``): rounded where that is safe, refused with the filter's name otherwise,
  exactly as live. Only what passes reaches the matching.
* **Latency.** An order reaches the venue ``latency_ns`` of event time after the event behind
  its signal; a cancel the same. It is matched at the first event of its symbol (a recorded
  trade or book change) at or after that time, against the book as the processor rebuilt it
  from the recording (REST snapshot + depth diffs) at that moment. One that arrives before
  the recording's first trade of its symbol is refused (no price to check it against).
* **Taking.** A MARKET order walks the book's levels best first (one fill a level, at the
  level's price; what the book cannot fill expires). A LIMIT order takes the levels it crosses,
  then rests (GTC) or expires (IOC; FOK fills whole or not at all). A post-only order
  (LIMIT_MAKER) that would take is refused. Liquidity a simulated order took stays gone until
  the recording updates that level. Without a live book (none yet, a gap, no depth in the
  capture) the last recorded trade price stands in, with any size (``fills_without_book``).
  A quote (``bookTicker``) newer than the book gives its top: levels it moved past are gone.
* **Queue position.** A resting order queues behind the visible quantity at its price when it
  arrives (nothing if it improves the best price). Recorded trades at its price consume that
  queue first and fill the order only beyond it (partially, as a maker, at its price); a level
  that shrinks below the queue ahead shortens it (cancellations leave from behind first); a
  recorded trade through its price fills what is left of it.
* **Late trades.** A trade older than the last trade of its symbol (a REST backfill after a
  gap) meets no order (``late_trades_passed``): it happened before the orders working now.
* **Order types.** MARKET and LIMIT orders by base quantity; a STOP, STOP_LIMIT, TAKE_PROFIT or
  quote-quantity order, and a replacement (``replaces``), are refused (counted, with the reason)
  rather than filled by a guess.
* **Cancel.** A ``cancel`` signal cancels every working order of its symbol that reached the
  venue before it, as the trader does.
* **Account.** The account holds ample funds of every asset (no balance refusals); the mock's
  order rules hold (tick 0.01, step 0.00001, NOTIONAL, PERCENT_PRICE_BY_SIDE, MAX_NUM_ORDERS).
* **Costs.** ``fee_bps`` of each fill's notional is charged; positions are per strategy and
  symbol, marked at the last trade price; PnL = realised + marked; the drawdown is the largest
  fall of that equity from its running peak, sampled at every fill and at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.order_spec import terms_problem
from tickpipe.common.schema import OrderIntent, Quote, Signal, Trade
from tickpipe.mock_ws.binance.rest import symbol_info
from tickpipe.mock_ws.matching import Order, OrderRejected
from tickpipe.processor.books import OrderBook
from tickpipe.tools.sim_match import RecordedEngine
from tickpipe.trader.instruments import Instruments
from tickpipe.trader.intent_rules import build_intent
from tickpipe.venues.binance.instruments import filters_of_symbol
from tickpipe.venues.binance.orders import order_refusal, venue_order_type

__all__ = ["Fill", "FillModel", "Position", "SimOrder", "mock_filters"]


ZERO = Decimal(0)
_BPS = Decimal(10_000)
#: SimOrder statuses of an order still at the venue (or on its way there).
WORKING = ("NEW", "RESTING", "PARTIALLY_FILLED")


def _text(value: Decimal) -> str:
    return "0" if value == 0 else format(value.normalize(), "f")


def mock_filters(symbol: str) -> InstrumentFilters:
    """The filters the mock's ``exchangeInfo`` publishes for ``symbol``."""
    return filters_of_symbol(symbol_info(symbol))


@dataclass
class SimOrder:
    """One simulated order; ``status`` NEW (not yet arrived), RESTING, FILLED, CANCELED..."""

    client_order_id: str
    signal_id: str
    strategy: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    post_only: bool
    qty: Decimal
    price: Decimal | None
    arrive_ns: int
    status: str = "NEW"
    reason: str = ""
    filled_qty: Decimal = ZERO
    #: the engine's order once it arrived, and how many of its fills were booked here
    venue: Order | None = None
    booked: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    """One simulated fill; ``status`` and ``filled_qty`` are the order's after it."""

    client_order_id: str
    signal_id: str
    strategy: str
    symbol: str
    side: str
    qty: str
    price: str
    fee: str
    liquidity: str  # "taker" or "maker"
    trade_id: str  # the simulated venue's trade id
    ts_event: int
    status: str = "FILLED"
    filled_qty: str = ""
    order_qty: str = ""

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass
class Position:
    """A strategy's position in one symbol: signed quantity, average cost, realised PnL, fees."""

    qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    mark: Decimal | None = None

    def apply(self, side: str, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        signed = qty if side == "buy" else -qty
        self.fees += fee
        self.realized -= fee
        if self.qty == 0 or (self.qty > 0) == (signed > 0):  # opening or adding
            total = self.qty + signed
            self.avg_price = (self.avg_price * abs(self.qty) + price * qty) / abs(total)
            self.qty = total
            return
        closed = min(abs(signed), abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        self.realized += (price - self.avg_price) * closed * direction
        self.qty += signed
        if self.qty == 0:
            self.avg_price = ZERO
        elif (self.qty > 0) != (direction > 0):  # flipped through zero: the rest opens anew
            self.avg_price = price

    def unrealized(self) -> Decimal:
        if self.mark is None or self.qty == 0:
            return ZERO
        return (self.mark - self.avg_price) * self.qty


@dataclass
class FillModel:
    """The simulated venue of a backtest (see the module docstring for its assumptions)."""

    symbols: tuple[str, ...] = ()
    latency_ns: int = 0
    default_order_type: str = "MARKET"
    fee_bps: Decimal = ZERO
    #: the venue's filters by symbol; a symbol missing here gets :func:`mock_filters`
    filters: Mapping[str, InstrumentFilters] | None = None
    #: the processor's live book of a symbol (``None`` while it has none)
    book_of: Callable[[str], OrderBook | None] = lambda symbol: None
    orders: dict[str, SimOrder] = field(default_factory=dict)
    #: symbol -> what is on its way to the venue: (arrival ns, sequence, order or None: a cancel)
    inbound: dict[str, list[tuple[int, int, SimOrder | None]]] = field(default_factory=dict)
    live: dict[str, list[SimOrder]] = field(default_factory=dict)  # symbol -> at the venue
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    refused: list[SimOrder] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    peak: Decimal = ZERO
    max_drawdown: Decimal = ZERO
    #: (event time ns, equity) at every fill: the equity curve.
    curve: list[tuple[int, Decimal]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = RecordedEngine(self.symbols, commission_rate=self.fee_bps / _BPS)
        self.shaper = Instruments(None, list(self.symbols), counts=self.counters,
                                  clock=lambda: 0)  # fmt: skip
        self.shaper.filters = dict(self.filters or {})
        self.now: dict[str, int] = {}
        self.last_trade_ns: dict[str, int] = {}
        self.sent = 0
        self.counters.setdefault("fills_without_book", 0)
        self.counters.setdefault("late_trades_passed", 0)

    def on_signal(self, signal: Signal) -> None:
        """Send the signal's order (or cancel) to the simulated venue."""
        arrive = signal.ts_event + self.latency_ns
        if signal.action == "cancel":
            self._send(signal.symbol, arrive, None)
            return
        intent = build_intent(signal, ts_intent=signal.ts_event,
                              order_type=self.default_order_type)  # fmt: skip
        try:
            qty = Decimal(signal.qty)
            price = Decimal(intent.price) if intent.price else None
        except InvalidOperation:
            qty, price = ZERO, None
        order = SimOrder(
            intent.client_order_id, signal.signal_id, signal.strategy, signal.symbol,
            signal.side, intent.order_type, intent.time_in_force, signal.post_only, qty, price,
            arrive,
        )  # fmt: skip
        if order.client_order_id in self.orders:
            return  # the same decision twice: one order, as the trader guarantees
        self.orders[order.client_order_id] = order
        problem = terms_problem(signal, signal.price, qty=signal.qty, order_type=intent.order_type)
        if problem is None:
            problem = order_refusal(intent)
        if problem is None and (intent.order_type not in ("MARKET", "LIMIT") or signal.quote_qty):
            kind = intent.order_type + (" by quote_qty" if signal.quote_qty else "")
            problem = f"the backtest fills MARKET and LIMIT orders by base qty only, not {kind}"
        if problem is None and signal.replaces:
            problem = "the backtest does not replace a working order (replaces=)"
        if problem is not None:
            self._refuse(order, f"order type refused: {problem}")
            return
        self._send(order.symbol, arrive, order)

    def _send(self, symbol: str, arrive_ns: int, order: SimOrder | None) -> None:
        """Put an order (``None``: a cancel) on its way; same arrival time: in signal order."""
        self.sent += 1
        self.inbound.setdefault(symbol, []).append((arrive_ns, self.sent, order))

    def on_trade(self, trade: Trade) -> list[Fill]:
        """Let ``trade`` reach the venue: due orders arrive, then it meets the resting ones."""
        if trade.ts_event < self.last_trade_ns.get(trade.symbol, trade.ts_event):
            # Older than the symbol's last trade (a REST backfill after a gap): too late to
            # meet the orders working now.
            self.counters["late_trades_passed"] += 1
            return []
        self.last_trade_ns[trade.symbol] = trade.ts_event
        price = Decimal(trade.price)
        made = self._advance(trade.symbol, trade.ts_event)
        for position in self._positions_of(trade.symbol):
            position.mark = price
        self.engine.on_recorded_trade(trade.symbol, price, Decimal(trade.qty), trade.ts_event)
        made += self._book_fills(trade.symbol, trade.ts_event)
        return made

    def on_quote(self, quote: Quote) -> None:
        """Note the newest best bid and ask of its symbol (newer than the book: on top of it)."""
        self.engine.list_symbol(quote.symbol)
        self.engine.recorded[quote.symbol].quote = quote

    def on_book(self, symbol: str, ts_event: int) -> list[Fill]:
        """The recorded book of ``symbol`` changed at ``ts_event``: arrivals, queue sizes."""
        made = self._advance(symbol, ts_event)
        self.engine.sync_queues(symbol)
        return made

    def sync_queues(self) -> None:
        """Shorten the queues ahead of resting orders to their levels' sizes now."""
        for symbol, live in self.live.items():
            if live:
                self.engine.set_book(symbol, self.book_of(symbol))
                self.engine.sync_queues(symbol)

    def _advance(self, symbol: str, ts_event: int) -> list[Fill]:
        """Move ``symbol``'s venue clock to ``ts_event``: orders and cancels due arrive."""
        ts_event = max(ts_event, self.now.get(symbol, ts_event))
        self.now[symbol] = ts_event
        self.engine.set_book(symbol, self.book_of(symbol))
        waiting = self.inbound.get(symbol)
        if not waiting or min(item[0] for item in waiting) > ts_event:
            return []
        due = sorted((item for item in waiting if item[0] <= ts_event), key=lambda i: i[:2])
        self.inbound[symbol] = [item for item in waiting if item[0] > ts_event]
        made: list[Fill] = []
        for at, _, order in due:
            if order is None:
                self._cancel_all(symbol, at)
            else:
                self._place(order, at)
                made += self._book_fills(symbol, at)
        return made

    def _place(self, order: SimOrder, now_ns: int) -> None:
        if order.symbol not in self.engine.recorded_market.last:
            self._refuse(order, f"no recorded trade of {order.symbol} yet to price it against")
            return
        intent = OrderIntent(
            order.client_order_id, order.signal_id, "binance", order.symbol, order.side,
            order.order_type, _text(order.qty), None if order.price is None else str(order.price),
            now_ns, now_ns, order.time_in_force, order.post_only,
        )  # fmt: skip
        if order.symbol not in self.shaper.filters:  # not given: what the mock publishes
            self.shaper.filters[order.symbol] = mock_filters(order.symbol)
        market = Decimal(self.engine.market.last_price(order.symbol))
        shaped, refused = self.shaper.shape(intent, venue_order_type(intent), market)
        if refused is not None:
            self._refuse(order, str(refused))
            return
        order.qty = Decimal(shaped.qty)
        order.price = Decimal(shaped.price) if shaped.price else None
        params: dict[str, str] = {
            "symbol": order.symbol, "side": order.side.upper(), "type": venue_order_type(shaped),
            "quantity": shaped.qty, "newClientOrderId": order.client_order_id,
        }  # fmt: skip
        if shaped.price:
            params["price"] = shaped.price
        if params["type"] == "LIMIT":
            params["timeInForce"] = order.time_in_force or "GTC"
        without = self.engine.recorded[order.symbol].without_book
        try:
            placed = self.engine.place(params, now_ns)
        except OrderRejected as exc:
            self._refuse(order, f"venue {exc.code}: {exc.msg}")
            return
        self.counters["fills_without_book"] += (
            self.engine.recorded[order.symbol].without_book - without
        )
        order.venue = placed.order
        order.status = "RESTING"
        self.live.setdefault(order.symbol, []).append(order)

    def _cancel_all(self, symbol: str, now_ns: int) -> None:
        if self.engine.open_orders(symbol):
            self.engine.cancel_all({"symbol": symbol}, now_ns)
        self._book_fills(symbol, now_ns)  # no fills: the statuses (CANCELED)

    def _book_fills(self, symbol: str, now_ns: int) -> list[Fill]:
        """Book the engine's new fills of ``symbol``'s orders; update their statuses."""
        made: list[Fill] = []
        live = self.live.get(symbol, [])
        for order in live:
            venue = order.venue
            assert venue is not None
            for fill in venue.fills[order.booked :]:
                order.filled_qty += fill.qty
                done = "FILLED" if order.filled_qty >= venue.orig_qty else "PARTIALLY_FILLED"
                made.append(self._fill(order, fill.price, fill.qty, fill.maker, fill.trade_id,
                                       now_ns, done))  # fmt: skip
            order.booked = len(venue.fills)
            order.status = {"NEW": "RESTING"}.get(venue.status, venue.status)
        self.live[symbol] = [o for o in live if o.status in WORKING]
        self.engine.forget(lambda o: not o.is_open)
        return made

    def _refuse(self, order: SimOrder, reason: str) -> None:
        order.status, order.reason = "REJECTED", reason
        self.refused.append(order)

    def _fill(
        self, order: SimOrder, price: Decimal, qty: Decimal, maker: bool, trade_id: int,
        ts_event: int, status: str,
    ) -> Fill:  # fmt: skip
        fee = price * qty * self.fee_bps / _BPS
        key = (order.strategy, order.symbol)
        position = self.positions.setdefault(key, Position(mark=price))
        position.apply(order.side, qty, price, fee)
        fill = Fill(
            order.client_order_id, order.signal_id, order.strategy, order.symbol, order.side,
            _text(qty), _text(price), _text(fee), "maker" if maker else "taker",
            f"sim{trade_id}", ts_event, status, _text(order.filled_qty), _text(order.qty),
        )  # fmt: skip
        self.fills.append(fill)
        self.sample_equity(ts_event)
        return fill

    def _positions_of(self, symbol: str) -> list[Position]:
        return [p for (_, s), p in self.positions.items() if s == symbol]

    def equity(self) -> Decimal:
        """Realised plus marked PnL of every position."""
        return sum((p.realized + p.unrealized() for p in self.positions.values()), ZERO)

    def sample_equity(self, ts_event: int | None = None) -> None:
        """Note the equity now for the drawdown (and, at ``ts_event``, on the curve)."""
        equity = self.equity()
        self.peak = max(self.peak, equity)
        self.max_drawdown = max(self.max_drawdown, self.peak - equity)
        if ts_event is not None:
            self.curve.append((ts_event, equity))
