"""Serve Binance's REST market data (depth, trades, klines, tickers, avgPrice) and weights.

Each market-data path answers what its WebSocket API twin answers
(:func:`~mock_ws.binance.ws_market.market_result`): one body and one error for both.

Every ``/api/`` request costs its documented weight against a per-IP 1-minute budget
(``weight_limit``, Binance 6000); every answer carries ``X-MBX-USED-WEIGHT-1M``, and a request
over the budget gets 429, code -1003 and ``Retry-After`` (seconds to the next minute).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.weights import request_weight, too_much_weight
from tickpipe.mock_ws.binance.ws_market import MARKET_METHODS, market_result
from tickpipe.mock_ws.order_model import OrderRejected

__all__ = ["RestMarket", "json_errors", "unknown_path"]

NS_PER_MINUTE = 60_000_000_000
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_METHOD_OF_PATH = {path: method for method, path in MARKET_METHODS.items()}


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
        for path in MARKET_METHODS.values():
            app.router.add_get(path, self._market)

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

    async def _answer(self, build: Callable[[], Any]) -> web.Response:
        try:
            body = build()
        except OrderRejected as exc:
            return web.json_response({"code": exc.code, "msg": exc.msg}, status=400)
        return web.json_response(body)

    async def _market(self, request: web.Request) -> web.Response:
        """Answer a market-data path as its WebSocket API twin does (one answer for both)."""
        method = _METHOD_OF_PATH[request.path]
        query = dict(request.query)
        now_ms = self.clock() // 1_000_000
        return await self._answer(lambda: market_result(self.feed, method, query, now_ms))
