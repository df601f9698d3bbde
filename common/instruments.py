"""Apply a venue's instrument filters to an order before it is sent (pure, no I/O).

Each venue publishes rules per symbol (Binance ``exchangeInfo`` filters, Alpaca's asset
attributes); its package turns them into one :class:`InstrumentFilters` (an empty text means "no
such rule"). :func:`apply_filters` then either returns the order as it may be sent, rounded where
rounding is safe, or the name of the filter it breaks and why:

* the quantity is rounded **down** to the step size (never trade more than asked);
* a limit price is rounded to the tick size **away from the market**: a buy down, a sell up (never
  pay more, or sell for less, than the strategy asked; a post-only order stays passive);
* a stop price is rounded to the tick size so that it never triggers earlier than asked: a buy
  stop (triggered from below) up, a sell stop (triggered from above) down; a take-profit order
  (``TAKE_PROFIT*``, triggered the other way) a buy down, a sell up;
* a quote-quantity MARKET order (``quote_qty``, no base quantity) has no quantity to round: its
  notional is its quote amount, checked against the minimum and maximum notional;
* everything else is refused, never stretched: a quantity below the minimum (also after
  rounding) or above the maximum (``LOT_SIZE``), a price outside its band (``PRICE_FILTER``), a
  notional (quantity x limit price, or x the market price for a MARKET order) below the minimum
  or above the maximum (``NOTIONAL``), an order type the venue does not list (``ORDER_TYPES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from tickpipe.common.decimals import finite_decimal
from tickpipe.common.decimals import plain_text as _text

__all__ = ["Accepted", "InstrumentFilters", "Refused", "apply_filters", "filters_of_fields"]


@dataclass(frozen=True, slots=True)
class InstrumentFilters:
    """One symbol's trading rules as decimal strings; ``""`` means the venue sets no such rule.

    ``order_types`` lists the venue's order types for the symbol (``LIMIT``, ``MARKET``,
    ``LIMIT_MAKER``...); empty means not published (not checked).
    """

    symbol: str
    tick_size: str = ""
    min_price: str = ""
    max_price: str = ""
    step_size: str = ""
    min_qty: str = ""
    max_qty: str = ""
    min_notional: str = ""
    max_notional: str = ""
    order_types: tuple[str, ...] = ()

    def to_fields(self) -> dict[str, str]:
        """Return the rules as stream fields (``order_types`` comma-separated)."""
        return {**{k: str(v) for k, v in self.to_dict().items() if k != "order_types"},
                "order_types": ",".join(self.order_types)}  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        """Return the rules as plain values (for a strategy, a log line or JSON)."""
        return {
            "symbol": self.symbol,
            "tick_size": self.tick_size,
            "min_price": self.min_price,
            "max_price": self.max_price,
            "step_size": self.step_size,
            "min_qty": self.min_qty,
            "max_qty": self.max_qty,
            "min_notional": self.min_notional,
            "max_notional": self.max_notional,
            "order_types": list(self.order_types),
        }


_RULES = ("tick_size", "min_price", "max_price", "step_size", "min_qty", "max_qty",
          "min_notional", "max_notional")  # fmt: skip


def filters_of_fields(fields: dict[str, str]) -> InstrumentFilters | None:
    """Read :meth:`InstrumentFilters.to_fields` back; ``None`` without a symbol."""
    symbol = fields.get("symbol", "")
    if not symbol:
        return None
    types = tuple(t for t in fields.get("order_types", "").split(",") if t)
    return InstrumentFilters(symbol, **{k: fields.get(k, "") for k in _RULES}, order_types=types)


@dataclass(frozen=True, slots=True)
class Accepted:
    """The order as it may be sent; ``notes`` say what was rounded (empty: nothing)."""

    qty: str
    price: str | None
    notes: tuple[str, ...] = ()
    stop_price: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """The filter the order breaks (``LOT_SIZE``, ``NOTIONAL``...) and a sentence saying why."""

    filter: str
    reason: str

    def __str__(self) -> str:
        return f"filter {self.filter}: {self.reason}"


def _rule(text: str) -> Decimal | None:
    """A rule's value, ``None`` when the venue sets none (empty, or ``0`` as Binance writes)."""
    value = finite_decimal(text) if text else None
    return value if value is not None and value > 0 else None


def _round(value: Decimal, step: Decimal, *, up: bool) -> Decimal:
    units = (value / step).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
    return units * step


def _price_band(rules: InstrumentFilters, what: str, value: Decimal) -> Refused | None:
    low, high = _rule(rules.min_price), _rule(rules.max_price)
    if value <= 0 or (low is not None and value < low):
        return Refused("PRICE_FILTER", f"{what} {_text(value)} below the minimum {rules.min_price}")
    if high is not None and value > high:
        return Refused("PRICE_FILTER", f"{what} {_text(value)} above the maximum {rules.max_price}")
    return None


def _on_tick(
    rules: InstrumentFilters, what: str, text: str, value: Decimal, *, up: bool, notes: list[str]
) -> Decimal:
    tick = _rule(rules.tick_size)
    if tick is None:
        return value
    rounded = _round(value, tick, up=up)
    if rounded != value:
        direction = "up" if up else "down"
        notes.append(f"{what} {text} rounded {direction} to {_text(rounded)} "
                     f"(tick {rules.tick_size})")  # fmt: skip
    return rounded


def _notional(rules: InstrumentFilters, notional: Decimal, how: str) -> Refused | None:
    low, high = _rule(rules.min_notional), _rule(rules.max_notional)
    if low is not None and notional < low:
        return Refused(
            "NOTIONAL", f"notional {_text(notional)} ({how}) below the minimum {rules.min_notional}"
        )
    if high is not None and notional > high:
        return Refused(
            "NOTIONAL", f"notional {_text(notional)} ({how}) above the maximum {rules.max_notional}"
        )
    return None


def apply_filters(
    rules: InstrumentFilters,
    *,
    side: str,
    order_type: str,
    qty: str,
    price: str | None,
    market_price: Decimal | None = None,
    quote_qty: str = "",
    stop_price: str = "",
) -> Accepted | Refused:
    """Round ``qty``, ``price`` and ``stop_price`` where safe; refuse what breaks a rule.

    ``order_type`` is the venue's name for it (``MARKET``, ``LIMIT``, ``LIMIT_MAKER``,
    ``STOP_LOSS``...); ``market_price`` values a MARKET order's notional (no check without one);
    ``quote_qty`` is a MARKET order's quote amount (``qty`` then empty). See the module doc.
    """
    if rules.order_types and order_type not in rules.order_types:
        allowed = ", ".join(rules.order_types)
        return Refused("ORDER_TYPES", f"{order_type} not offered for {rules.symbol} ({allowed})")
    notes: list[str] = []
    try:
        limit = Decimal(price) if price else None
        stop = Decimal(stop_price) if stop_price else None
        spend = Decimal(quote_qty) if quote_qty else None
        amount = Decimal(qty) if spend is None else Decimal(0)
    except InvalidOperation:
        return Refused("LOT_SIZE", f"quantity {qty!r} or price {price!r} is not a number")
    if spend is not None:  # a quote amount: no base quantity to round; its value is the amount
        refused = _notional(rules, spend, f"quote_qty {quote_qty}")
        if refused is not None:
            return refused
        return Accepted("", None, ())
    step = _rule(rules.step_size)
    if step is not None:
        rounded = _round(amount, step, up=False)
        if rounded != amount:
            notes.append(
                f"quantity {qty} rounded down to {_text(rounded)} (step {rules.step_size})"
            )
            amount = rounded
    min_qty, max_qty = _rule(rules.min_qty), _rule(rules.max_qty)
    if amount <= 0 or (min_qty is not None and amount < min_qty):
        shown = f"{qty} (after rounding {_text(amount)})" if notes else qty
        floor = rules.min_qty or "0"
        return Refused("LOT_SIZE", f"quantity {shown} below the minimum {floor}")
    if max_qty is not None and amount > max_qty:
        return Refused("LOT_SIZE", f"quantity {qty} above the maximum {rules.max_qty}")
    buy = side.lower() != "sell"
    if limit is not None:
        limit = _on_tick(rules, "price", str(price), limit, up=not buy, notes=notes)
        refused = _price_band(rules, "price", limit)
        if refused is not None:
            return refused
    if stop is not None:
        take_profit = order_type.startswith("TAKE_PROFIT")  # triggered the other way
        stop = _on_tick(rules, "stop price", stop_price, stop, up=buy != take_profit, notes=notes)
        refused = _price_band(rules, "stop price", stop)
        if refused is not None:
            return refused
    valued_at = limit if limit is not None else stop if stop is not None else market_price
    if valued_at is not None:
        refused = _notional(rules, amount * valued_at, f"{_text(amount)} x {_text(valued_at)}")
        if refused is not None:
            return refused
    return Accepted(
        _text(amount),
        _text(limit) if limit is not None else None,
        tuple(notes),
        _text(stop) if stop is not None else "",
    )
