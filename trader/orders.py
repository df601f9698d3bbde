"""Follow each order through its states and turn fills into position changes (pure, no I/O).

Positions move by the growth of each order's cumulative filled quantity (and cumulative quote
quantity for the price), so an acknowledgement, a status query and the order updates describing
the same fills, or a replayed update, never count a fill twice. Each venue fill id an order
update carries (Binance's trade id ``t``, Alpaca's ``execution_id``) is kept in the order's state:
a report of a fill already applied changes nothing, and a fill reported without a cumulative
quantity moves the order by its own quantity exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Any

from tickpipe.trader.positions import PositionBook
from tickpipe.trader.risk import WorkingOrder, to_decimal

__all__ = ["ACTIVE", "TERMINAL", "Fill", "OrderState", "OrderTracker", "advance"]

#: Order statuses after which nothing changes any more.
TERMINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"})
#: Order statuses of a live order.
ACTIVE = frozenset({"NEW", "PENDING_NEW", "PARTIALLY_FILLED", "PENDING_CANCEL"})
_KNOWN = TERMINAL | ACTIVE
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Fill:
    """A position change: signed base quantity (positive = bought) and its quote amount."""

    qty: Decimal = ZERO
    quote: Decimal = ZERO

    def __bool__(self) -> bool:
        return self.qty != 0


@dataclass(frozen=True, slots=True)
class OrderState:
    """What we know of one order; ``filled_qty`` and ``cum_quote`` never go down."""

    client_order_id: str
    symbol: str
    side: str
    status: str = "NEW"
    order_id: str = ""
    qty: str = "0"
    filled_qty: str = "0"
    ts_event: int = 0
    cum_quote: str = "0"
    price: str = ""
    fill_ids: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def remaining(self) -> Decimal:
        qty = to_decimal(self.qty) or ZERO
        return max(ZERO, qty - (to_decimal(self.filled_qty) or ZERO))

    def working(self) -> WorkingOrder:
        return WorkingOrder(self.client_order_id, self.symbol, self.side, self.remaining())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderState:
        return cls(
            client_order_id=str(data["client_order_id"]),
            symbol=str(data["symbol"]),
            side=str(data["side"]).lower(),
            status=str(data.get("status", "NEW")),
            order_id=str(data.get("order_id", "")),
            qty=str(data.get("qty", "0")),
            filled_qty=str(data.get("filled_qty", "0")),
            ts_event=int(data.get("ts_event", 0)),
            cum_quote=str(data.get("cum_quote", "0")),
            price=str(data.get("price", "") or ""),
            fill_ids=tuple(str(f) for f in data.get("fill_ids", ())),
        )


#: Fill ids that name no fill (Binance's ``t`` is -1 on reports without a trade).
_NO_FILL_IDS = frozenset({"", "-1"})


def _next_status(current: str, reported: str) -> str:
    """Apply the state machine: terminal states stay; a live state never moves backwards."""
    if current in TERMINAL or reported not in _KNOWN:
        return current
    if reported in TERMINAL:
        return reported
    if current == "PARTIALLY_FILLED" and reported in ("NEW", "PENDING_NEW"):
        return current
    return reported


def advance(
    previous: OrderState,
    *,
    status: str,
    filled_qty: str,
    order_id: str = "",
    qty: str = "",
    ts_event: int = 0,
    cum_quote: str = "",
    fallback_price: Decimal | None = None,
    fill_id: str = "",
    last_qty: str = "",
) -> tuple[OrderState, Fill]:
    """Return the order's state after one report and the position change it implies.

    The change's quote amount is the growth of the cumulative quote quantity; when the report has
    none, the grown quantity is valued at ``fallback_price`` (the fill's price, else the order's).
    A report of fill ``fill_id`` already applied changes nothing; a report with a new fill id and
    no cumulative quantity grows the order by ``last_qty``.
    """
    fill_id = "" if fill_id in _NO_FILL_IDS else fill_id
    if fill_id and fill_id in previous.fill_ids:
        return previous, Fill()
    old_filled = to_decimal(previous.filled_qty) or ZERO
    new_filled = to_decimal(filled_qty)
    if new_filled is None and fill_id:
        new_filled = old_filled + max(ZERO, to_decimal(last_qty) or ZERO)
    if new_filled is None or new_filled < old_filled:
        new_filled = old_filled
    grown = new_filled - old_filled
    old_quote = to_decimal(previous.cum_quote) or ZERO
    new_quote = to_decimal(cum_quote)
    if new_quote is None or new_quote < old_quote:
        new_quote = old_quote
    quote = new_quote - old_quote
    if grown and quote <= 0:
        price = fallback_price if fallback_price is not None else to_decimal(previous.price)
        quote = grown * price if price is not None and price > 0 else ZERO
        new_quote = old_quote + quote
    state = replace(
        previous,
        status=_next_status(previous.status, status.upper()),
        order_id=order_id or previous.order_id,
        qty=qty or previous.qty,
        filled_qty=str(new_filled) if grown else previous.filled_qty,
        cum_quote=str(new_quote) if new_quote != old_quote else previous.cum_quote,
        ts_event=max(ts_event, previous.ts_event),
        fill_ids=(*previous.fill_ids, fill_id) if fill_id else previous.fill_ids,
    )
    return state, Fill(grown if previous.side == "buy" else -grown, quote)


class OrderTracker:
    """Follow orders through NEW → PARTIALLY_FILLED → FILLED / CANCELED / REJECTED / EXPIRED."""

    def __init__(self, book: PositionBook | None = None) -> None:
        self.orders: dict[str, OrderState] = {}
        self.book = book or PositionBook()

    def position(self, symbol: str) -> Decimal:
        return self.book.qty(symbol)

    def working(self, symbol: str | None = None) -> list[OrderState]:
        """Return the orders not in a terminal state (of ``symbol``, or of every symbol)."""
        return [
            o
            for o in self.orders.values()
            if not o.terminal and (symbol is None or o.symbol == symbol)
        ]

    def apply(self, previous: OrderState, **report: Any) -> tuple[OrderState, Fill]:
        """Apply one report on an order and keep the result; return it and the fill."""
        state, fill = advance(previous, **report)
        self.commit(state, fill)
        return state, fill

    def commit(self, state: OrderState, fill: Fill) -> None:
        """Keep ``state`` and apply ``fill`` to its symbol's position."""
        self.orders[state.client_order_id] = state
        if fill:
            self.book.fill(state.symbol, fill.qty, fill.quote)
