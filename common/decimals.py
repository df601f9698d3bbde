"""Parse venue decimal strings once: a bounded cache of ``Decimal(text)`` (pure, no I/O).

A partition's trades repeat the same few prices and quantities; the bar builder, the strategies
and the trade validation all need them as :class:`~decimal.Decimal`. ``Decimal`` values are
immutable, so handing out the same object for the same text changes nothing but the cost.
:func:`finite_decimal` is the one lenient reading: a finite number, or ``None``;
:func:`plain_text` the one writing of a computed amount.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["MAX_CACHED", "decimal_of", "finite_decimal", "plain_text"]

#: The cache is emptied when it holds this many texts (a bound, not a working-set guess).
MAX_CACHED = 4096

_cache: dict[str, Decimal] = {}


def decimal_of(text: str) -> Decimal:
    """Return ``Decimal(text)``, parsed once per distinct text (raises like ``Decimal``)."""
    value = _cache.get(text)
    if value is None:
        value = Decimal(text)
        if len(_cache) >= MAX_CACHED:
            _cache.clear()
        _cache[text] = value
    return value


def finite_decimal(text: Any) -> Decimal | None:
    """Return the finite ``Decimal`` of ``text`` (a string, an int or a Decimal); ``None`` when
    it is missing, unreadable, infinite or NaN."""
    if text is None or isinstance(text, bool):
        return None
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return value if value.is_finite() else None


def plain_text(value: Decimal) -> str:
    """Write ``value`` without exponent or trailing zeros (``1.50`` -> ``1.5``, zero -> ``0``)."""
    return "0" if value == 0 else format(value.normalize(), "f")
