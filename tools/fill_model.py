"""Fill a backtest's orders against the recorded trades; keep positions and PnL (pure, no I/O).

The assumptions, stated once (``tickpipe backtest`` prints them with its summary):

* **Latency.** An order reaches the venue ``latency_ns`` of event time after the event that
  caused its signal, and a cancel as long after its own; the first recorded trade of the symbol
  at or after that time is the market it meets. The trades of the frame that caused the signal
  never fill it.
* **Arrival.** A MARKET order fills its whole quantity at that trade's price (a taker; no depth,
  so no walk through the book). A LIMIT order that crosses that price (a buy at or above it, a
  sell at or below) fills at once at that price, unless it is post-only (then it is refused,
  as the venue refuses a LIMIT_MAKER that would take). One that does not cross is expired if
  it is IOC or FOK and rests if it is GTC.
* **Resting.** A resting order is at the back of the queue at its price: it fills, whole and
  at its limit price (a maker), only when a later trade prints *through* it (below a buy's
  limit, above a sell's); a trade at exactly its price fills the queue ahead of it first.
* **Order types.** MARKET and LIMIT orders by base quantity; a STOP, STOP_LIMIT or
  quote-quantity order is refused (counted, with the reason) rather than filled by a guess.
* **Cancel.** A ``cancel`` signal cancels every working order of its symbol, as the trader does.
* **Costs.** ``fee_bps`` of each fill's notional is charged; positions are per strategy and
  symbol, marked at the last trade price; PnL = realised + marked; the drawdown is the largest
  fall of that equity from its running peak, sampled at every fill and at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from tickpipe.common.decimals import plain_text as _text
from tickpipe.common.order_spec import order_problem
from tickpipe.common.schema import Signal, Trade
from tickpipe.common.units import client_order_id_for

__all__ = ["Fill", "FillModel", "Position", "SimOrder"]

ZERO = Decimal(0)
_BPS = Decimal(10_000)


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


@dataclass(frozen=True, slots=True)
class Fill:
    """One simulated fill."""

    client_order_id: str
    signal_id: str
    strategy: str
    symbol: str
    side: str
    qty: str
    price: str
    fee: str
    liquidity: str  # "taker" or "maker"
    trade_id: str  # the recorded trade it met
    ts_event: int

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

    latency_ns: int = 0
    default_order_type: str = "MARKET"
    fee_bps: Decimal = ZERO
    orders: dict[str, SimOrder] = field(default_factory=dict)
    working: dict[str, list[SimOrder]] = field(default_factory=dict)  # symbol -> not done
    cancels: dict[str, list[int]] = field(default_factory=dict)  # symbol -> effective times
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    refused: list[SimOrder] = field(default_factory=list)
    peak: Decimal = ZERO
    max_drawdown: Decimal = ZERO
    #: (event time ns, equity) at every fill: the equity curve.
    curve: list[tuple[int, Decimal]] = field(default_factory=list)

    def on_signal(self, signal: Signal) -> None:
        """Send the signal's order (or cancel) to the simulated venue."""
        arrive = signal.ts_event + self.latency_ns
        if signal.action == "cancel":
            self.cancels.setdefault(signal.symbol, []).append(arrive)
            return
        kind = signal.order_type or self.default_order_type
        limit = kind == "LIMIT"
        try:
            qty = Decimal(signal.qty)
            price = Decimal(signal.price) if limit else None
        except InvalidOperation:
            qty, price = ZERO, None
        order = SimOrder(
            client_order_id_for(signal.signal_id), signal.signal_id, signal.strategy,
            signal.symbol, signal.side, kind, (signal.time_in_force or "GTC") if limit else "",
            signal.post_only, qty, price, arrive,
        )  # fmt: skip
        if order.client_order_id in self.orders:
            return  # the same decision twice: one order, as the trader guarantees
        self.orders[order.client_order_id] = order
        problem = order_problem(kind, signal.time_in_force, signal.post_only, signal.price,
                                qty=signal.qty, quote_qty=signal.quote_qty,
                                stop_price=signal.stop_price)  # fmt: skip
        if problem is None and (kind not in ("MARKET", "LIMIT") or signal.quote_qty):
            problem = f"the backtest fills MARKET and LIMIT orders by base qty only, not {kind}" + (
                " by quote_qty" if signal.quote_qty else ""
            )
        if problem is None and qty <= 0:
            problem = f"quantity {signal.qty!r} is not positive"
        if problem is not None:
            self._refuse(order, problem)
            return
        self.working.setdefault(order.symbol, []).append(order)

    def on_trade(self, trade: Trade) -> list[Fill]:
        """Let ``trade`` meet the working orders of its symbol; return the fills it made."""
        price = Decimal(trade.price)
        for position in self._positions_of(trade.symbol):
            position.mark = price
        working = self.working.get(trade.symbol)
        if not working:
            return []
        self._cancel_due(trade.symbol, trade.ts_event)
        made: list[Fill] = []
        for order in list(working):
            if order.arrive_ns > trade.ts_event:
                continue
            fill = self._arrive(order, price) if order.status == "NEW" else None
            if order.status == "RESTING" and fill is None:
                fill = self._through(order, price)
            if fill is not None:
                made.append(self._fill(order, fill[0], fill[1], trade))
            if order.status not in ("NEW", "RESTING"):
                working.remove(order)
        return made

    def _arrive(self, order: SimOrder, market: Decimal) -> tuple[Decimal, str] | None:
        if order.order_type == "MARKET":
            return market, "taker"
        assert order.price is not None
        crosses = market <= order.price if order.side == "buy" else market >= order.price
        if crosses:
            if order.post_only:
                self._refuse(order, f"post-only {order.side} at {order.price} would take at "
                                    f"{market}")  # fmt: skip
                return None
            return market, "taker"
        if order.time_in_force in ("IOC", "FOK"):
            order.status = "EXPIRED"
            return None
        order.status = "RESTING"
        return None

    def _through(self, order: SimOrder, market: Decimal) -> tuple[Decimal, str] | None:
        assert order.price is not None
        through = market < order.price if order.side == "buy" else market > order.price
        return (order.price, "maker") if through else None

    def _cancel_due(self, symbol: str, ts_event: int) -> None:
        due = [t for t in self.cancels.get(symbol, []) if t <= ts_event]
        if not due:
            return
        self.cancels[symbol] = [t for t in self.cancels[symbol] if t > ts_event]
        cut = max(due)
        for order in self.working.get(symbol, []):
            if order.arrive_ns <= cut and order.status in ("NEW", "RESTING"):
                order.status = "CANCELED"
        self.working[symbol] = [o for o in self.working[symbol] if o.status != "CANCELED"]

    def _refuse(self, order: SimOrder, reason: str) -> None:
        order.status, order.reason = "REJECTED", reason
        self.refused.append(order)

    def _fill(self, order: SimOrder, price: Decimal, liquidity: str, trade: Trade) -> Fill:
        order.status = "FILLED"
        fee = price * order.qty * self.fee_bps / _BPS
        key = (order.strategy, order.symbol)
        position = self.positions.setdefault(key, Position(mark=price))
        position.apply(order.side, order.qty, price, fee)
        fill = Fill(
            order.client_order_id, order.signal_id, order.strategy, order.symbol, order.side,
            _text(order.qty), _text(price), _text(fee), liquidity, trade.trade_id, trade.ts_event,
        )  # fmt: skip
        self.fills.append(fill)
        self.sample_equity(trade.ts_event)
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
