"""Parse venue decimal strings once: a bounded cache of ``Decimal(text)`` (pure, no I/O).

A partition's trades repeat the same few prices and quantities; the bar builder, the strategies
and the trade validation all need them as :class:`~decimal.Decimal`. ``Decimal`` values are
immutable, so handing out the same object for the same text changes nothing but the cost.
"""

from __future__ import annotations

from decimal import Decimal

__all__ = ["MAX_CACHED", "decimal_of"]

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
