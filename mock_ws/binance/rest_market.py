"""Serve Binance's REST market data (depth, trades, klines, tickers, avgPrice) and weights.

Every ``/api/`` request costs its documented weight against a per-IP 1-minute budget
(``weight_limit``, Binance 6000); every answer carries ``X-MBX-USED-WEIGHT-1M``, and a request
over the budget gets 429, code -1003 and ``Retry-After`` (seconds to the next minute).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tickpipe.mock_ws.binance.candles import INTERVALS
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.rest import exchange_info
from tickpipe.mock_ws.binance.tickers import (
    avg_price,
    book_tickers,
    price_tickers,
    ticker_weight,
    tickers_24hr,
)
from tickpipe.mock_ws.order_model import OrderRejected

__all__ = [
    "RestMarket",
    "int_param",
    "json_errors",
    "request_weight",
    "too_much_weight",
    "unknown_path",
]

NS_PER_MINUTE = 60_000_000_000
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
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


def _mandatory(name: str) -> OrderRejected:
    return OrderRejected(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def int_param(query: Any, name: str, default: int | None, low: int, high: int) -> int | None:
    """Parse an integer parameter in ``low..high`` (-1100 otherwise); ``default`` if absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OrderRejected(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None
    if not low <= value <= high:
        raise OrderRejected(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


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


def unknown_path(method: str, path: str) -> web.Response:
    """Answer a path or method the venue does not serve: 404 with a JSON error body.

    The venue answers JSON errors everywhere (Spot API, "General API Information": error
    payloads are ``{"code", "msg"}``); the mock's code for this case is -1000.
    """
    body = {"code": -1000, "msg": f"Unknown endpoint: {method} {path}"}
    return web.json_response(body, status=404)


@web.middleware
async def json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Turn aiohttp's text/plain 404 and 405 answers into the venue's JSON error shape."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return unknown_path(request.method, request.path)


class RestMarket:
    """REST market-data handlers over a :class:`MarketFeed`, and the weight middleware."""

    def __init__(
        self, feed: MarketFeed, clock: Callable[[], int], *, weight_limit: int = 6000
    ) -> None:
        self.feed = feed
        self.clock = clock
        self.weight_limit = weight_limit
        self._used: dict[str, tuple[int, int]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/depth", self._depth)
        app.router.add_get("/api/v3/trades", self._trades)
        app.router.add_get("/api/v3/historicalTrades", self._historical)
        app.router.add_get("/api/v3/aggTrades", self._agg)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/api/v3/uiKlines", self._klines)  # same rows for the mock's market
        app.router.add_get("/api/v3/ticker/24hr", self._ticker_24hr)
        app.router.add_get("/api/v3/ticker/price", self._ticker_price)
        app.router.add_get("/api/v3/ticker/bookTicker", self._book_ticker)
        app.router.add_get("/api/v3/avgPrice", self._avg_price)

    @web.middleware
    async def weight_middleware(
        self, request: web.Request, handler: _Handler
    ) -> web.StreamResponse:
        """Charge the request's weight; answer 429 over the budget; add the used-weight header."""
        if not request.path.startswith("/api/"):
            return await handler(request)
        now_ns = self.clock()
        minute = now_ns // NS_PER_MINUTE
        ip = request.remote or "?"
        window, used = self._used.get(ip, (minute, 0))
        if window != minute:
            used = 0
        used += request_weight(request.method, request.path, dict(request.query))
        self._used[ip] = (minute, used)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if used > self.weight_limit:
            retry_s = max(1, -(-((minute + 1) * NS_PER_MINUTE - now_ns) // 1_000_000_000))
            body = {"code": -1003, "msg": too_much_weight(429, 0, self.weight_limit)}
            headers["Retry-After"] = str(retry_s)
            return web.json_response(body, status=429, headers=headers)
        response = await handler(request)
        response.headers.update(headers)
        return response

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.clock() // 1_000_000})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        status, body = exchange_info(
            self.feed.market.symbols, dict(request.query), self.clock() // 1_000_000
        )
        return web.json_response(body, status=status)

    def _symbol(self, request: web.Request) -> str:
        symbol = request.query.get("symbol", "").upper()
        if not symbol:
            raise _mandatory("symbol")
        if symbol not in self.feed.books:
            raise OrderRejected(-1121, "Invalid symbol.")
        return symbol

    async def _answer(self, build: Callable[[], Any]) -> web.Response:
        try:
            body = build()
        except OrderRejected as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=400)
        return web.json_response(body)

    async def _ticker_24hr(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        return await self._answer(lambda: tickers_24hr(self.feed, query, self._now_ms()))

    async def _ticker_price(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        return await self._answer(lambda: price_tickers(self.feed, query))

    async def _book_ticker(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        return await self._answer(lambda: book_tickers(self.feed, query))

    async def _avg_price(self, request: web.Request) -> web.Response:
        return await self._answer(
            lambda: avg_price(self.feed, self._symbol(request), self._now_ms())
        )

    def _now_ms(self) -> int:
        return self.clock() // 1_000_000

    async def _depth(self, request: web.Request) -> web.Response:
        def build() -> Any:
            symbol = self._symbol(request)
            limit = int_param(request.query, "limit", 100, 1, 5000) or 100
            return self.feed.depth(symbol, limit)

        return await self._answer(build)

    async def _trades(self, request: web.Request) -> web.Response:
        def build() -> Any:
            symbol = self._symbol(request)
            limit = int_param(request.query, "limit", 500, 1, 1000) or 500
            return self.feed.recent_trades(symbol, limit)

        return await self._answer(build)

    async def _historical(self, request: web.Request) -> web.Response:
        def build() -> Any:
            symbol = self._symbol(request)
            limit = int_param(request.query, "limit", 500, 1, 1000) or 500
            from_id = int_param(request.query, "fromId", None, 0, 1 << 62)
            return self.feed.historical_trades(symbol, limit, from_id)

        return await self._answer(build)

    async def _klines(self, request: web.Request) -> web.Response:
        def build() -> Any:
            symbol = self._symbol(request)
            query = request.query
            interval = query.get("interval", "")
            if not interval:
                raise _mandatory("interval")
            if interval not in INTERVALS:
                raise OrderRejected(-1120, "Invalid interval.")
            limit = int_param(query, "limit", 500, 1, 1000) or 500
            start = int_param(query, "startTime", None, 0, 1 << 62)
            end = int_param(query, "endTime", None, 0, 1 << 62)
            return self.feed.klines(symbol, interval, start, end, limit)

        return await self._answer(build)

    async def _agg(self, request: web.Request) -> web.Response:
        def build() -> Any:
            symbol = self._symbol(request)
            query = request.query
            limit = int_param(query, "limit", 500, 1, 1000) or 500
            from_id = int_param(query, "fromId", None, 0, 1 << 62)
            start = int_param(query, "startTime", None, 0, 1 << 62)
            end = int_param(query, "endTime", None, 0, 1 << 62)
            return self.feed.agg_trades(symbol, limit, from_id, start, end)

        return await self._answer(build)
