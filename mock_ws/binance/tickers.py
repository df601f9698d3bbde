"""Build Binance's REST ticker bodies from the seeded market (pure, no I/O).

``GET /api/v3/ticker/24hr`` (FULL and MINI), ``ticker/price``, ``ticker/bookTicker`` and
``avgPrice``, as the Spot API's "Market data endpoints" section describes them: one object for
``symbol``, a list for ``symbols`` (a JSON array) or for every symbol when neither is given, and
``-1128`` when both are. A symbol without a trade in the window answers zero statistics with
``firstId``/``lastId`` ``-1``, as the venue does. ``avgPrice`` is the volume-weighted price of the
last five minutes' trades (``mins: 5``) and ``closeTime`` the last trade's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from tickpipe.mock_ws.binance.candles import RollingTicker
from tickpipe.mock_ws.binance.feed import AVG_PRICE_MINS, MarketFeed
from tickpipe.mock_ws.order_model import OrderRejected, d8

__all__ = [
    "AVG_PRICE_MINS",
    "avg_price",
    "book_tickers",
    "price_tickers",
    "symbols_of",
    "ticker_weight",
    "tickers_24hr",
]

_ZERO = "0.00000000"


def symbols_of(listed: tuple[str, ...], query: Mapping[str, str]) -> tuple[list[str], bool]:
    """Return the symbols a ticker request names and whether it asked for one (not a list).

    Raise :class:`OrderRejected` with the venue's code for a bad combination or symbol.
    """
    one, many = query.get("symbol"), query.get("symbols")
    if one and many:
        raise OrderRejected(-1128, "Combination of optional parameters invalid.")
    if one:
        symbol = one.upper()
        if symbol not in listed:
            raise OrderRejected(-1121, "Invalid symbol.")
        return [symbol], True
    if many:
        try:
            parsed = orjson.loads(many)
        except orjson.JSONDecodeError:
            parsed = None
        if (
            not isinstance(parsed, list)
            or not parsed
            or not all(isinstance(s, str) for s in parsed)
        ):
            raise OrderRejected(-1100, "Illegal characters found in parameter 'symbols'.")
        wanted = [s.upper() for s in parsed]
        if any(s not in listed for s in wanted):
            raise OrderRejected(-1121, "Invalid symbol.")
        return wanted, False
    return list(listed), False


def ticker_weight(path: str, query: Mapping[str, str]) -> int:
    """Return the request weight of a ticker endpoint (Spot API, "Market data endpoints")."""
    if path == "/api/v3/avgPrice":
        return 2
    if query.get("symbol"):
        return 2
    count = None
    if query.get("symbols"):
        try:
            count = len(orjson.loads(query["symbols"]))
        except (orjson.JSONDecodeError, TypeError):
            count = None
    if path == "/api/v3/ticker/24hr":
        if count is None:
            return 80
        return 2 if count <= 20 else 40 if count <= 100 else 80
    return 4  # ticker/price and ticker/bookTicker without one symbol


def _single(bodies: list[dict[str, Any]], one: bool) -> Any:
    return bodies[0] if one else bodies


def tickers_24hr(feed: MarketFeed, query: Mapping[str, str], now_ms: int) -> Any:
    """Answer ``GET /api/v3/ticker/24hr`` (``type`` FULL, the default, or MINI)."""
    kind = query.get("type", "FULL").upper()
    if kind not in ("FULL", "MINI"):
        raise OrderRejected(-1100, "Illegal characters found in parameter 'type'.")
    symbols, one = symbols_of(feed.market.symbols, query)
    return _single([_ticker(feed, s, now_ms, kind == "MINI") for s in symbols], one)


def _ticker(feed: MarketFeed, symbol: str, now_ms: int, mini: bool) -> dict[str, Any]:
    ticker: RollingTicker = feed.tickers[symbol]
    bbo = feed.books[symbol].book_ticker()
    stats = ticker.full(symbol, now_ms, bbo)
    if stats is None:  # no trade in the window: zero statistics
        last = d8(Decimal(feed.market.last_price(symbol)))
        body: dict[str, Any] = {
            "symbol": symbol,
            "priceChange": _ZERO,
            "priceChangePercent": "0.000",
            "weightedAvgPrice": _ZERO,
            "prevClosePrice": _ZERO,
            "lastPrice": last,
            "lastQty": _ZERO,
            "bidPrice": bbo["b"],
            "bidQty": bbo["B"],
            "askPrice": bbo["a"],
            "askQty": bbo["A"],
            "openPrice": _ZERO,
            "highPrice": _ZERO,
            "lowPrice": _ZERO,
            "volume": _ZERO,
            "quoteVolume": _ZERO,
            "openTime": now_ms - ticker.window_ms,
            "closeTime": now_ms,
            "firstId": -1,
            "lastId": -1,
            "count": 0,
        }
    else:
        body = {
            "symbol": symbol,
            "priceChange": stats["p"],
            "priceChangePercent": stats["P"],
            "weightedAvgPrice": stats["w"],
            "prevClosePrice": stats["x"],
            "lastPrice": stats["c"],
            "lastQty": stats["Q"],
            "bidPrice": stats["b"],
            "bidQty": stats["B"],
            "askPrice": stats["a"],
            "askQty": stats["A"],
            "openPrice": stats["o"],
            "highPrice": stats["h"],
            "lowPrice": stats["l"],
            "volume": stats["v"],
            "quoteVolume": stats["q"],
            "openTime": stats["O"],
            "closeTime": stats["C"],
            "firstId": stats["F"],
            "lastId": stats["L"],
            "count": stats["n"],
        }
    if mini:  # the MINI shape drops the change, the previous close, the last qty and the BBO
        for name in (
            "priceChange",
            "priceChangePercent",
            "weightedAvgPrice",
            "prevClosePrice",
            "lastQty",
            "bidPrice",
            "bidQty",
            "askPrice",
            "askQty",
        ):
            body.pop(name)
    return body


def price_tickers(feed: MarketFeed, query: Mapping[str, str]) -> Any:
    """Answer ``GET /api/v3/ticker/price``: the last traded price."""
    symbols, one = symbols_of(feed.market.symbols, query)
    return _single(
        [{"symbol": s, "price": d8(Decimal(feed.market.last_price(s)))} for s in symbols], one
    )


def book_tickers(feed: MarketFeed, query: Mapping[str, str]) -> Any:
    """Answer ``GET /api/v3/ticker/bookTicker``: the best bid and ask with their quantities."""
    symbols, one = symbols_of(feed.market.symbols, query)
    bodies = []
    for symbol in symbols:
        bbo = feed.books[symbol].book_ticker()
        bodies.append(
            {
                "symbol": symbol,
                "bidPrice": bbo["b"],
                "bidQty": bbo["B"],
                "askPrice": bbo["a"],
                "askQty": bbo["A"],
            }
        )
    return _single(bodies, one)


def avg_price(feed: MarketFeed, symbol: str, now_ms: int) -> dict[str, Any]:
    """Answer ``GET /api/v3/avgPrice``: the last five minutes' volume-weighted price."""
    price, close_ms = feed.average_price(symbol, now_ms)
    return {"mins": AVG_PRICE_MINS, "price": price, "closeTime": close_ms}
