"""Keep positions, average cost and profit and loss per symbol (pure, no I/O).

A fill is a signed base quantity (positive = bought) and the quote amount it cost or brought.
Average cost accounting: a fill that grows the position moves the average cost; one that shrinks
it realises ``(fill price - average cost) * closed quantity`` (sign by the position's side);
one that crosses zero closes the old position and opens the rest at the fill price. Unrealised
profit is ``(mark price - average cost) * position`` at the last trade price seen.

The Redis hash ``{V}:positions`` holds readable fields per symbol: ``SYMBOL`` (position),
``SYMBOL:avg_cost``, ``SYMBOL:realized_pnl``, ``SYMBOL:unrealized_pnl``, ``SYMBOL:mark_price``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from tickpipe.trader.risk import to_decimal

__all__ = ["Position", "PositionBook", "qty_text"]

ZERO = Decimal(0)
_FIELDS = ("avg_cost", "realized_pnl", "unrealized_pnl", "mark_price")


def qty_text(value: Decimal) -> str:
    """Write a decimal as plain text without trailing zeros (``0.0010`` → ``0.001``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class Position:
    """One symbol's position; ``mark_price`` is ``None`` until a price is known."""

    qty: Decimal = ZERO
    avg_cost: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    mark_price: Decimal | None = None

    @property
    def unrealized_pnl(self) -> Decimal:
        if self.mark_price is None or self.qty == 0:
            return ZERO
        return (self.mark_price - self.avg_cost) * self.qty

    def fill(self, qty: Decimal, quote: Decimal) -> Position:
        """Return the position after a fill of signed ``qty`` for ``quote`` (unsigned)."""
        if qty == 0:
            return self
        price = abs(quote / qty)
        if self.qty == 0 or (self.qty > 0) == (qty > 0):
            total = self.qty + qty
            cost = (abs(self.qty) * self.avg_cost + abs(qty) * price) / abs(total)
            return replace(self, qty=total, avg_cost=cost)
        closed = min(abs(qty), abs(self.qty))
        direction = 1 if self.qty > 0 else -1
        realized = self.realized_pnl + (price - self.avg_cost) * closed * direction
        total = self.qty + qty
        if total == 0:
            return replace(self, qty=ZERO, avg_cost=ZERO, realized_pnl=realized)
        if (total > 0) == (self.qty > 0):
            return replace(self, qty=total, realized_pnl=realized)
        return replace(self, qty=total, avg_cost=price, realized_pnl=realized)


class PositionBook:
    """Positions of every symbol of one venue."""

    def __init__(self, positions: Mapping[str, Position] | None = None) -> None:
        self.positions: dict[str, Position] = dict(positions or {})

    def get(self, symbol: str) -> Position:
        return self.positions.get(symbol, Position())

    def qty(self, symbol: str) -> Decimal:
        return self.get(symbol).qty

    def fill(self, symbol: str, qty: Decimal, quote: Decimal) -> Position:
        """Apply a fill and return the symbol's new position."""
        position = self.get(symbol).fill(qty, quote)
        self.positions[symbol] = position
        return position

    def mark(self, symbol: str, price: Decimal) -> Position:
        """Set the mark price of ``symbol`` (the last trade price) and return the position."""
        position = replace(self.get(symbol), mark_price=price)
        self.positions[symbol] = position
        return position

    @staticmethod
    def fields(symbol: str, position: Position) -> dict[str, str]:
        """Return the readable hash fields of one symbol."""
        mark = position.mark_price
        return {
            symbol: qty_text(position.qty),
            f"{symbol}:avg_cost": qty_text(position.avg_cost),
            f"{symbol}:realized_pnl": qty_text(position.realized_pnl),
            f"{symbol}:unrealized_pnl": qty_text(position.unrealized_pnl),
            f"{symbol}:mark_price": "" if mark is None else qty_text(mark),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> PositionBook:
        """Read the hash back (fields that do not parse count as zero)."""
        book = cls()
        for name, text in fields.items():
            symbol, _, part = name.partition(":")
            if part and part not in _FIELDS:
                continue
            value = to_decimal(text)
            current = book.get(symbol)
            if not part:
                book.positions[symbol] = replace(current, qty=value or ZERO)
            elif part == "avg_cost":
                book.positions[symbol] = replace(current, avg_cost=value or ZERO)
            elif part == "realized_pnl":
                book.positions[symbol] = replace(current, realized_pnl=value or ZERO)
            elif part == "mark_price":
                book.positions[symbol] = replace(current, mark_price=value)
        return book

    def summary(self) -> dict[str, dict[str, str]]:
        """Return every symbol's fields for the health record."""
        return {
            symbol: {
                "qty": qty_text(p.qty),
                "avg_cost": qty_text(p.avg_cost),
                "realized_pnl": qty_text(p.realized_pnl),
                "unrealized_pnl": qty_text(p.unrealized_pnl),
            }
            for symbol, p in sorted(self.positions.items())
        }
