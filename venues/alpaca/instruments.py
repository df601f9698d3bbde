"""Read Alpaca's instrument filters out of an asset (``GET /v2/assets/{symbol}``; pure, no I/O).

A crypto asset carries ``min_order_size`` (minimum quantity), ``min_trade_increment`` (step
size) and ``price_increment`` (tick size); a stock carries none of them (whole or fractional
shares, cent ticks are the venue's own business), so its filters are empty. Alpaca has no
post-only orders: ``order_types`` lists MARKET, LIMIT, STOP and STOP_LIMIT (crypto: no STOP).
"""

from __future__ import annotations

from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.instruments import InstrumentFilters

__all__ = ["ASSETS_PATH", "filters_of_asset"]

ASSETS_PATH = "/v2/assets/"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


_STOCK_TYPES = ("MARKET", "LIMIT", "STOP", "STOP_LIMIT")
_CRYPTO_TYPES = ("MARKET", "LIMIT", "STOP_LIMIT")


def filters_of_asset(symbol: str, asset: Any) -> InstrumentFilters:
    """Convert one asset object into the symbol's filters."""
    if not isinstance(asset, dict):
        raise DecodeError(f"asset {symbol}: the answer is not an object")
    if asset.get("tradable") is False:
        return InstrumentFilters(symbol=symbol, order_types=("NONE",))
    return InstrumentFilters(
        symbol=symbol,
        tick_size=_text(asset.get("price_increment")),
        step_size=_text(asset.get("min_trade_increment")),
        min_qty=_text(asset.get("min_order_size")),
        order_types=_CRYPTO_TYPES if "/" in symbol else _STOCK_TYPES,
    )
