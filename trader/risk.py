"""Decide whether a signal may become an order: the trader's risk limits (pure, no I/O, no clock).

Limits: the kill switch, configured symbols, a largest order quantity, a largest position per
symbol (base quantity, counting what working orders could still add), a largest order value
(quote quantity), and an order rate (a token bucket fed with time as integer nanoseconds).
:func:`breach_cancels` says which working orders to cancel when a position is at its limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tickpipe.common.decimals import finite_decimal
from tickpipe.common.schema import Signal
from tickpipe.common.units import NS_PER_S

__all__ = [
    "RiskLimits",
    "TokenBucket",
    "WorkingOrder",
    "breach_cancels",
    "check_signal",
    "to_decimal",
]


def to_decimal(text: str | None) -> Decimal | None:
    """Parse a finite decimal, or return ``None``."""
    return finite_decimal(text)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits every order must pass; ``None`` means no limit; ``kill_switch`` refuses all."""

    max_order_qty: Decimal | None = None
    max_position: Decimal | None = None
    max_notional: Decimal | None = None
    kill_switch: bool = False
    symbols: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    """An order that may still fill: its symbol, side and the quantity not filled yet."""

    client_order_id: str
    symbol: str
    side: str
    remaining: Decimal


def _signed(side: str, qty: Decimal) -> Decimal:
    return qty if side == "buy" else -qty


def check_signal(
    signal: Signal,
    limits: RiskLimits,
    *,
    position: Decimal = Decimal(0),
    working: Iterable[WorkingOrder] = (),
    price: Decimal | None = None,
    kill_switch: bool = False,
) -> str | None:
    """Return why a ``place`` signal must not become an order, or ``None`` if it may.

    ``position`` is the symbol's current position, ``working`` its orders that may still fill
    (their remaining quantity counts towards the position limit in the direction of the order),
    ``price`` the price to value the order at (the signal's, else the last trade's). A
    quote-quantity order (``quote_qty``) is valued at its quote amount; its base quantity, for
    the quantity and position limits, is that amount at ``price`` (unchecked without one).
    """
    if signal.action != "place":
        return f"action {signal.action!r} is not an order"
    if signal.side not in ("buy", "sell"):
        return f"side must be 'buy' or 'sell', got {signal.side!r}"
    if limits.symbols is not None and signal.symbol not in limits.symbols:
        return f"symbol {signal.symbol!r} is not configured"
    quote = None
    if signal.quote_qty:
        quote = to_decimal(signal.quote_qty)
        if quote is None or quote <= 0:
            return f"quote_qty must be a positive amount, got {signal.quote_qty!r}"
        if signal.qty:
            return f"a quote_qty order names no qty, got qty {signal.qty!r}"
        # The base quantity it buys or sells is only known at the price it is valued at.
        qty = quote / price if price is not None and price > 0 else None
    else:
        qty = to_decimal(signal.qty)
        if qty is None or qty <= 0:
            return f"quantity must be a positive number, got {signal.qty!r}"
    if kill_switch or limits.kill_switch:
        return "kill switch is on"
    shown = signal.qty if quote is None else f"~{_text(qty)} ({signal.quote_qty} quote)"
    if qty is not None and limits.max_order_qty is not None and qty > limits.max_order_qty:
        return f"quantity {shown} exceeds the limit {limits.max_order_qty}"
    if qty is not None and limits.max_position is not None:
        change = _signed(signal.side, qty)
        pending = sum(
            (_signed(w.side, w.remaining) for w in working if w.symbol == signal.symbol),
            Decimal(0),
        )
        worst = position + pending + change
        if abs(worst) > limits.max_position and abs(worst) > abs(position + pending):
            return (
                f"position limit: {signal.symbol} would reach {_text(worst)} "
                f"(limit {limits.max_position})"
            )
    if limits.max_notional is not None:
        if quote is not None:
            notional = quote  # a quote-quantity order's value is its quote amount
        else:
            value = price if price is not None and price > 0 else to_decimal(signal.price)
            if value is None or value <= 0:
                return "notional limit: no price to value the order at"
            notional = (qty or Decimal(0)) * value
        if notional > limits.max_notional:
            return f"notional limit: {_text(notional)} exceeds {limits.max_notional}"
    return None


def _text(value: Decimal | None) -> str:
    return "?" if value is None else f"{value.normalize():f}"


def breach_cancels(
    symbol: str, position: Decimal, working: Iterable[WorkingOrder], limits: RiskLimits
) -> list[str]:
    """Return the working orders of ``symbol`` to cancel because its position is at its limit.

    At or past the limit, every working order that would grow the position further is cancelled;
    orders that reduce it stay.
    """
    if limits.max_position is None or abs(position) < limits.max_position or position == 0:
        return []
    growing = "buy" if position > 0 else "sell"
    return [w.client_order_id for w in working if w.symbol == symbol and w.side == growing]


class TokenBucket:
    """Allow ``rate_per_s`` orders per second on average and ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self.tokens = self.burst
        self._last_ns: int | None = None

    def _refill(self, now_ns: int) -> None:
        if self._last_ns is not None and now_ns > self._last_ns:
            gained = (now_ns - self._last_ns) / NS_PER_S * self.rate_per_s
            self.tokens = min(self.burst, self.tokens + gained)
        if self._last_ns is None or now_ns > self._last_ns:
            self._last_ns = now_ns

    def take(self, now_ns: int) -> bool:
        """Take one token if there is one; return whether it was taken."""
        self._refill(now_ns)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def wait_s(self, now_ns: int) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now_ns)
        return max(0.0, (1 - self.tokens) / self.rate_per_s)
