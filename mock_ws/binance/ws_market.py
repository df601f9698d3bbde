"""Answer the market-data requests of the WebSocket API and of REST from the seeded market (pure).

``depth``, ``trades.recent``, ``trades.historical``, ``trades.aggregate``, ``klines``,
``uiKlines``, ``avgPrice``, ``ticker.24hr``, ``ticker.price``, ``ticker.book`` and
``exchangeInfo`` return the same bodies as their REST twins (Spot WebSocket API, "Market data
requests"): parameters arrive as JSON values (``symbols`` as a list) instead of query strings.
The REST handlers (:mod:`mock_ws.binance.rest_market`) answer through :func:`market_result` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tickpipe.mock_ws.binance.candles import INTERVALS
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.rest import exchange_info
from tickpipe.mock_ws.binance.tickers import (
    avg_price,
    book_tickers,
    price_tickers,
    tickers_24hr,
)
from tickpipe.mock_ws.binance.weights import request_weight
from tickpipe.mock_ws.order_model import OrderRejected
from tickpipe.mock_ws.order_rules import int_param, mandatory, symbol_param

__all__ = ["MARKET_METHODS", "int_param", "market_result", "market_weight"]

#: method -> the REST path whose weight and body it shares
MARKET_METHODS = {
    "depth": "/api/v3/depth",
    "trades.recent": "/api/v3/trades",
    "trades.historical": "/api/v3/historicalTrades",
    "trades.aggregate": "/api/v3/aggTrades",
    "klines": "/api/v3/klines",
    "uiKlines": "/api/v3/uiKlines",
    "avgPrice": "/api/v3/avgPrice",
    "ticker.24hr": "/api/v3/ticker/24hr",
    "ticker.price": "/api/v3/ticker/price",
    "ticker.book": "/api/v3/ticker/bookTicker",
    "exchangeInfo": "/api/v3/exchangeInfo",
}


def _query(params: Mapping[str, Any]) -> dict[str, str]:
    """Turn JSON parameters into the query strings the REST builders read."""
    out = {}
    for name, value in params.items():
        if isinstance(value, (list, dict)):
            out[name] = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


def market_weight(method: str, params: Mapping[str, Any]) -> int:
    """Return the request weight of a market-data method (that of its REST twin)."""
    return request_weight("GET", MARKET_METHODS[method], _query(params))


def market_result(feed: MarketFeed, method: str, params: Mapping[str, Any], now_ms: int) -> Any:
    """Answer one market-data method; raise :class:`OrderRejected` with the venue's code."""
    query = _query(params)
    if method == "exchangeInfo":
        status, body = exchange_info(feed.market.symbols, query, now_ms)
        if status != 200:
            raise OrderRejected(int(body["code"]), str(body["msg"]))
        return body
    if method == "ticker.24hr":
        return tickers_24hr(feed, query, now_ms)
    if method == "ticker.price":
        return price_tickers(feed, query)
    if method == "ticker.book":
        return book_tickers(feed, query)
    symbol = symbol_param(query, feed.books)
    big = 1 << 62
    if method == "depth":
        return feed.depth(symbol, int_param(query, "limit", 100, 1, 5000) or 100)
    if method == "avgPrice":
        return avg_price(feed, symbol, now_ms)
    limit = int_param(query, "limit", 500, 1, 1000) or 500
    if method == "trades.recent":
        return feed.recent_trades(symbol, limit)
    if method == "trades.historical":
        return feed.historical_trades(symbol, limit, int_param(query, "fromId", None, 0, big))
    if method == "trades.aggregate":
        return feed.agg_trades(
            symbol,
            limit,
            int_param(query, "fromId", None, 0, big),
            int_param(query, "startTime", None, 0, big),
            int_param(query, "endTime", None, 0, big),
        )
    interval = query.get("interval", "")  # klines, uiKlines
    if not interval:
        raise mandatory("interval")
    if interval not in INTERVALS:
        raise OrderRejected(-1120, "Invalid interval.")
    start, end = (
        int_param(query, "startTime", None, 0, big),
        int_param(query, "endTime", None, 0, big),
    )
    return feed.klines(symbol, interval, start, end, limit)
