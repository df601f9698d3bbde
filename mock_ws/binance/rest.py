"""Build the mock's REST bodies that stream clients read (pure): ``exchangeInfo``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from tickpipe.mock_ws.matching import split_symbol
from tickpipe.mock_ws.order_rules import ORDER_TYPES, symbol_filters

__all__ = ["RATE_LIMITS", "exchange_info", "symbol_info"]

RATE_LIMITS: list[dict[str, Any]] = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def symbol_info(symbol: str) -> dict[str, Any]:
    """Return one ``symbols[]`` entry of ``exchangeInfo`` (abbreviated)."""
    base, quote = split_symbol(symbol)
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "opoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "pegInstructionsAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": symbol_filters(),
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }


def exchange_info(
    symbols: Iterable[str], query: Mapping[str, str], server_time_ms: int
) -> tuple[int, dict[str, Any]]:
    """Answer ``GET /api/v3/exchangeInfo`` with ``symbol``/``symbols`` filters; (status, body)."""
    listed = [s.upper() for s in symbols]
    wanted = listed
    try:
        if query.get("symbol"):
            wanted = [query["symbol"].upper()]
        elif query.get("symbols"):
            parsed = orjson.loads(query["symbols"])
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                raise ValueError
            wanted = [s.upper() for s in parsed]
    except (ValueError, orjson.JSONDecodeError):
        return 400, {"code": -1100, "msg": "Illegal characters found in parameter 'symbols'."}
    unknown = [s for s in wanted if s not in listed]
    if unknown:
        return 400, {"code": -1121, "msg": "Invalid symbol."}
    return 200, {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "rateLimits": RATE_LIMITS,
        "exchangeFilters": [],
        "symbols": [symbol_info(s) for s in wanted],
    }
