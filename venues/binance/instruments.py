"""Read Binance's instrument filters out of ``exchangeInfo`` (pure, no I/O).

``PRICE_FILTER`` gives the tick size and price band, ``LOT_SIZE`` the step size and quantity
band, ``NOTIONAL`` (or the older ``MIN_NOTIONAL``) the notional band, and ``orderTypes`` the
order types the symbol takes. Binance writes ``0`` for a rule it does not apply; that reads as
"no rule" in :class:`common.instruments.InstrumentFilters`.
"""

from __future__ import annotations

from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.instruments import InstrumentFilters

__all__ = ["EXCHANGE_INFO_PATH", "filters_of_exchange_info", "filters_of_symbol"]

EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"


def filters_of_symbol(entry: dict[str, Any]) -> InstrumentFilters:
    """Convert one ``symbols[]`` entry of ``exchangeInfo``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
        raise DecodeError("exchangeInfo: a symbols[] entry has no symbol")
    rules: dict[str, Any] = {}
    for item in entry.get("filters") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("filterType")
        if kind == "PRICE_FILTER":
            rules |= {"tick_size": item.get("tickSize"), "min_price": item.get("minPrice"),
                      "max_price": item.get("maxPrice")}  # fmt: skip
        elif kind == "LOT_SIZE":
            rules |= {"step_size": item.get("stepSize"), "min_qty": item.get("minQty"),
                      "max_qty": item.get("maxQty")}  # fmt: skip
        elif kind == "NOTIONAL":
            rules |= {"min_notional": item.get("minNotional"),
                      "max_notional": item.get("maxNotional")}  # fmt: skip
        elif kind == "MIN_NOTIONAL":
            rules.setdefault("min_notional", item.get("minNotional") or "")
    types = entry.get("orderTypes")
    return InstrumentFilters(
        symbol=entry["symbol"],
        **{k: str(v) if v is not None else "" for k, v in rules.items()},
        order_types=tuple(str(t) for t in types) if isinstance(types, list) else (),
    )


def filters_of_exchange_info(body: Any) -> dict[str, InstrumentFilters]:
    """Convert an ``exchangeInfo`` answer into filters by symbol."""
    if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
        raise DecodeError("exchangeInfo: the answer has no symbols list")
    found = [filters_of_symbol(entry) for entry in body["symbols"]]
    return {f.symbol: f for f in found}
