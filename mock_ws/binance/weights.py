"""Binance's REST request weights and its over-the-budget texts (pure)."""

from __future__ import annotations

from tickpipe.mock_ws.binance.tickers import ticker_weight

__all__ = ["request_weight", "too_much_weight"]

_WEIGHTS = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/order": 4,
    "/api/v3/account": 20,
    "/api/v3/allOrders": 20,
    "/api/v3/myTrades": 20,
    "/api/v3/userDataStream": 2,
}


def request_weight(method: str, path: str, query: dict[str, str]) -> int:
    """Return the request weight Binance charges for a REST call."""
    if path == "/api/v3/depth":
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if path.startswith("/api/v3/ticker/") or path == "/api/v3/avgPrice":
        return ticker_weight(path, query)
    if path == "/api/v3/openOrders":
        if method == "DELETE":
            return 1
        return 6 if query.get("symbol") else 80
    if path == "/api/v3/order/test":
        return 20 if query.get("computeCommissionRates", "").lower() == "true" else 1
    if path == "/api/v3/order" and method != "GET":
        return 1
    return _WEIGHTS.get(path, 1)


def too_much_weight(status: int, until_ms: int, limit: int = 6000) -> str:
    """Return the venue's -1003 text: over the weight limit (429), or banned until (418)."""
    if status == 418:
        return (
            f"Way too much request weight used; IP banned until {until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
    return (
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API."
    )
