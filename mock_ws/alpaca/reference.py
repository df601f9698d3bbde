"""Answer Alpaca's clock, calendar, asset, position-close, activity and latest-data requests.

Pure, like :mod:`mock_ws.alpaca.api`, which routes here. Shapes follow Alpaca's Trading API
("Clock", "Calendar", "Assets", "Positions", "Account activities") and Market Data API
("Latest trades/quotes/bars", "Snapshots"; crypto under ``/v1beta3/crypto/us``): single-symbol
stock paths answer ``{"symbol", "trade"}``, multi-symbol ones ``{"trades": {symbol: ...}}``,
snapshots ``{symbol: {"latestTrade", "latestQuote", "minuteBar", "dailyBar",
"prevDailyBar"}}`` (crypto: under ``"snapshots"``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from tickpipe.mock_ws.alpaca import calendar
from tickpipe.mock_ws.alpaca.account import asset_id
from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.alpaca.codec import rest_object
from tickpipe.mock_ws.alpaca.marketdata import AlpacaMarket, is_crypto
from tickpipe.mock_ws.alpaca.orders import TradingError

__all__ = ["asset_json", "reference_route"]

NOT_FOUND = {"code": 40410000, "message": "endpoint not found"}
_CRYPTO = "/v1beta3/crypto/us/"
Answer = tuple[int, Any, list[dict[str, Any]]]


def asset_json(symbol: str) -> dict[str, Any]:
    """Return ``GET /v2/assets/{symbol}`` for a simulated symbol."""
    crypto = is_crypto(symbol)
    return {
        "id": asset_id(symbol),
        "class": "crypto" if crypto else "us_equity",
        "exchange": "CRYPTO" if crypto else "NASDAQ",
        "symbol": symbol,
        "name": symbol,
        "status": "active",
        "tradable": True,
        "marginable": not crypto,
        "maintenance_margin_requirement": 100 if crypto else 30,
        "shortable": not crypto,
        "easy_to_borrow": not crypto,
        "fractionable": True,
        "min_order_size": "0.000026" if crypto else None,
        "min_trade_increment": "0.000000001" if crypto else None,
        "price_increment": "1" if crypto else None,
        "attributes": [],
    }


def _plain(message: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if message is None else rest_object(message)


def _date(query: Mapping[str, str], name: str, default: datetime.date) -> datetime.date:
    raw = query.get(name)
    if not raw:
        return default
    try:
        return datetime.date.fromisoformat(raw[:10])
    except ValueError:
        raise TradingError(422, 42210000, f"invalid {name}") from None


def _symbols(query: Mapping[str, str]) -> list[str]:
    symbols = [s for s in query.get("symbols", "").split(",") if s]
    if not symbols:
        raise TradingError(400, 40010000, "symbols is required")
    return symbols


def reference_route(
    broker: AlpacaBroker,
    market: AlpacaMarket,
    method: str,
    path: str,
    query: Mapping[str, str],
    now_ns: int,
) -> Answer | None:
    """Answer a request this module serves, or None to let the caller route it."""
    if method == "GET" and path == "/v2/clock":
        return 200, calendar.clock(now_ns), []
    if method == "GET" and path == "/v2/calendar":
        today = datetime.datetime.fromtimestamp(now_ns / 1e9, calendar.NEW_YORK).date()
        start = _date(query, "start", today)
        end = _date(query, "end", today + datetime.timedelta(days=30))
        return 200, calendar.calendar(start, end), []
    if method == "GET" and path.startswith("/v2/assets/"):
        symbol = broker.resolve_symbol(path.removeprefix("/v2/assets/").replace("%2F", "/"))
        if symbol is None:
            raise TradingError(404, 40410000, "asset not found")
        return 200, asset_json(symbol), []
    if method == "GET" and path == "/v2/account/activities":
        return 200, _activities(broker, query), []
    if path == "/v2/positions" and method == "DELETE":
        results, events = broker.close_all_positions(now_ns)
        return 207, results, events
    if path.startswith("/v2/positions/"):
        symbol = path.removeprefix("/v2/positions/").replace("%2F", "/")
        if method == "GET":
            return 200, broker.position_json(symbol), []
        if method == "DELETE":
            order, events = broker.close_position(symbol, dict(query), now_ns)
            return 200, order, events
    if method == "GET" and (path.startswith("/v2/stocks/") or path.startswith(_CRYPTO)):
        return _latest(broker, market, path, query)
    return None


def _activities(broker: AlpacaBroker, query: Mapping[str, str]) -> list[dict[str, Any]]:
    types = {t for t in query.get("activity_types", "").split(",") if t}
    if types - {"FILL"} and "FILL" not in types:
        return []  # the mock books fills only
    rows = list(broker.activities)
    if query.get("direction", "desc") == "desc":
        rows.reverse()
    try:
        size = int(query.get("page_size") or 100)
    except ValueError:
        raise TradingError(422, 42210000, "invalid page_size") from None
    return rows[: max(1, min(size, 100))]


def _latest(
    broker: AlpacaBroker, market: AlpacaMarket, path: str, query: Mapping[str, str]
) -> Answer | None:
    views: dict[str, Callable[[str], Any]] = {
        "trades/latest": lambda s: _plain(market.latest(s, "trade")),
        "quotes/latest": lambda s: _plain(market.latest(s, "quote")),
        "bars/latest": lambda s: _plain(market.latest(s, "bar")),
    }
    crypto = path.startswith(_CRYPTO)
    tail = path.removeprefix(_CRYPTO if crypto else "/v2/stocks/")
    if crypto:
        tail = tail.removeprefix("latest/")
        tail = {"trades": "trades/latest", "quotes": "quotes/latest", "bars": "bars/latest"}.get(
            tail, tail
        )
    if tail in ("snapshots",):
        body = {s: _snapshot(market, _known(broker, s)) for s in _symbols(query)}
        return 200, ({"snapshots": body} if crypto else body), []
    if tail in views:  # multi-symbol form
        name = tail.split("/")[0]
        return 200, {name: {s: views[tail](_known(broker, s)) for s in _symbols(query)}}, []
    symbol, _, rest = tail.partition("/")
    if not crypto and rest == "snapshot":
        return 200, {"symbol": symbol, **_snapshot(market, _known(broker, symbol))}, []
    if not crypto and rest in views:
        key = rest.split("s/")[0]
        return 200, {"symbol": symbol, key: views[rest](_known(broker, symbol))}, []
    return None


def _known(broker: AlpacaBroker, symbol: str) -> str:
    known = broker.resolve_symbol(symbol)
    if known is None:
        raise TradingError(400, 40010000, f"invalid symbol: {symbol}")
    return known


def _snapshot(market: AlpacaMarket, symbol: str) -> dict[str, Any]:
    return {
        "latestTrade": _plain(market.latest(symbol, "trade")),
        "latestQuote": _plain(market.latest(symbol, "quote")),
        "minuteBar": _plain(market.latest(symbol, "bar")),
        "dailyBar": _plain(market.latest(symbol, "day")),
        "prevDailyBar": None,
    }
