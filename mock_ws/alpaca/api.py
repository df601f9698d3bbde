"""Answer Alpaca REST requests: Trading API v2 and historical stock data (pure, no I/O).

Trading: ``POST/GET/DELETE /v2/orders``, ``GET/PATCH/DELETE /v2/orders/{id}``,
``GET /v2/orders:by_client_order_id``, ``GET /v2/account``, ``GET /v2/positions``.
Data: ``GET /v2/stocks/{symbol}/trades|bars`` (single symbol) and ``GET
/v2/stocks/trades|bars?symbols=`` (several), from the history the simulation has made since
the mock started (1-minute bars only). Every request needs ``APCA-API-KEY-ID`` and
``APCA-API-SECRET-KEY``; errors carry the venue's ``{"code","message"}`` body.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.alpaca.codec import parse_rfc3339, rest_object
from tickpipe.mock_ws.alpaca.marketdata import AlpacaMarket
from tickpipe.mock_ws.alpaca.orders import TradingError
from tickpipe.mock_ws.alpaca.reference import reference_route

__all__ = ["AlpacaApi", "ApiResult"]

UNAUTHORIZED = {"code": 40110000, "message": "request is not authorized"}
CODE_INVALID = 42210000
DEFAULT_DATA_LIMIT = 1000
MAX_DATA_LIMIT = 10_000
_TIMEFRAMES = frozenset({"1Min", "1T", "1min"})


@dataclass
class ApiResult:
    """An HTTP answer: status, JSON body (``None`` = empty), trade updates and a log record."""

    status: int
    body: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    order_record: dict[str, Any] | None = None


def _invalid(message: str) -> TradingError:
    return TradingError(422, CODE_INVALID, message)


class AlpacaApi:
    """Route REST requests to the broker and the market history; see the module docstring."""

    def __init__(
        self, broker: AlpacaBroker, market: AlpacaMarket, credentials: Mapping[str, str]
    ) -> None:
        self.broker = broker
        self.market = market
        self._credentials = dict(credentials)

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Return whether the APCA key headers name a known key with its secret."""
        lowered = {k.lower(): v for k, v in headers.items()}
        key = lowered.get("apca-api-key-id", "")
        secret = lowered.get("apca-api-secret-key", "")
        expected = self._credentials.get(key)
        return expected is not None and hmac.compare_digest(secret.encode(), expected.encode())

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        now_ns: int,
    ) -> ApiResult:
        """Answer one request."""
        if not self.authorized(headers):
            return ApiResult(401, UNAUTHORIZED)
        try:
            return self._route(method.upper(), path.rstrip("/"), query, body, now_ns)
        except TradingError as exc:
            result = ApiResult(exc.status, exc.body())
            if method.upper() == "POST" and path.rstrip("/") == "/v2/orders":
                result.order_record = {"accepted": False, "status": exc.status, **exc.body()}
            return result

    def _route(
        self, method: str, path: str, query: Mapping[str, str], body: bytes, now_ns: int
    ) -> ApiResult:
        broker = self.broker
        answer = reference_route(broker, self.market, method, path, query, now_ns)
        if answer is not None:
            return ApiResult(*answer)
        if path == "/v2/orders":
            if method == "POST":
                order, events = broker.submit(_json_body(body), now_ns)
                record = {"accepted": True, **{k: order[k] for k in _RECORD_FIELDS}}
                return ApiResult(200, order, events, record)
            if method == "GET":
                return ApiResult(200, [o.to_json() for o in self._list(query)])
            if method == "DELETE":
                results, events = broker.cancel_all(now_ns)
                return ApiResult(207, results, events)
        elif path == "/v2/orders:by_client_order_id" and method == "GET":
            client_id = query.get("client_order_id", "")
            return ApiResult(200, broker.by_client_order_id(client_id).to_json())
        elif path.startswith("/v2/orders/"):
            order_id = path.removeprefix("/v2/orders/")
            if method == "GET":
                return ApiResult(200, broker.get(order_id).to_json())
            if method == "DELETE":
                return ApiResult(204, None, broker.cancel(order_id, now_ns))
            if method == "PATCH":
                order, events = broker.replace_order(order_id, _json_body(body), now_ns)
                record = {"accepted": True, **{k: order[k] for k in _RECORD_FIELDS},
                          "replaces": order_id}  # fmt: skip
                return ApiResult(200, order, events, record)
        elif path == "/v2/account" and method == "GET":
            return ApiResult(200, broker.account_json())
        elif path == "/v2/positions" and method == "GET":
            return ApiResult(200, broker.positions_json())
        elif path.startswith("/v2/stocks/") and method == "GET":
            return self._data(path.removeprefix("/v2/stocks/"), query)
        return ApiResult(404, {"code": 40410000, "message": "endpoint not found"})

    def _list(self, query: Mapping[str, str]) -> list[Any]:
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise _invalid("invalid status")
        limit = _int(query, "limit", 50, 500)
        direction = query.get("direction", "desc")
        symbols = {s for s in query.get("symbols", "").split(",") if s}
        return self.broker.list_orders(status, limit=limit, direction=direction, symbols=symbols)

    def _data(self, tail: str, query: Mapping[str, str]) -> ApiResult:
        parts = tail.split("/")
        if len(parts) == 2:
            symbol, kind = parts
            multi = False
            symbols = [symbol]
        elif len(parts) == 1:
            kind, multi = parts[0], True
            symbols = [s for s in query.get("symbols", "").split(",") if s]
            if not symbols:
                raise _invalid("symbols is required")
        else:
            return ApiResult(404, {"code": 40410000, "message": "endpoint not found"})
        if kind not in ("trades", "bars"):
            return ApiResult(404, {"code": 40410000, "message": "endpoint not found"})
        if kind == "bars" and query.get("timeframe", "1Min") not in _TIMEFRAMES:
            raise _invalid("invalid timeframe: the mock serves 1Min bars")
        start = _time(query, "start")
        end = _time(query, "end")
        limit = _int(query, "limit", DEFAULT_DATA_LIMIT, MAX_DATA_LIMIT)
        offset = _int(query, "page_token", 0, 1 << 62) if query.get("page_token") else 0
        rows: list[tuple[str, dict[str, Any]]] = []
        for symbol in symbols:
            history = (
                self.market.history_trades(symbol)
                if kind == "trades"
                else self.market.history_bars(symbol)
            )
            for message in history:
                t = message["t"].ns
                if (start is None or t >= start) and (end is None or t <= end):
                    rows.append((symbol, rest_object(message)))
        if query.get("sort") == "desc":
            rows.reverse()
        page = rows[offset : offset + limit]
        token = str(offset + limit) if offset + limit < len(rows) else None
        if not multi:
            return ApiResult(
                200, {kind: [r for _, r in page], "symbol": symbols[0], "next_page_token": token}
            )
        grouped: dict[str, list[dict[str, Any]]] = {}
        for symbol, row in page:
            grouped.setdefault(symbol, []).append(row)
        return ApiResult(200, {kind: grouped, "next_page_token": token})


_RECORD_FIELDS = (
    "id",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "qty",
    "notional",
    "limit_price",
    "stop_price",
    "time_in_force",
)


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise _invalid("request body format is invalid") from None


def _int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(f"invalid {name}") from None
    if value < 0 or (value == 0 and name != "page_token"):
        raise _invalid(f"invalid {name}")
    return min(value, maximum)


def _time(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise _invalid(f"invalid {name}") from None
