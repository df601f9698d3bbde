"""Answer Binance WebSocket API requests (``/ws-api/v3``) against the matching engine (pure).

A request ``{"id", "method", "params"}`` gets ``{"id", "status", "result" | "error",
"rateLimits"}``. Methods: ``ping``, ``time``, ``order.place`` (every Spot order type),
``order.status``,
``order.cancel``, ``order.test``, ``openOrders.status``, ``openOrders.cancelAll``, ``allOrders``,
``myTrades``, ``account.status``, the market-data methods of :mod:`mock_ws.binance.ws_market`
(``depth``, ``trades.*``, ``klines``, ``ticker.*``, ``exchangeInfo``...), ``session.logon``
(Ed25519 keys only; afterwards signed methods need only ``timestamp``), ``session.status``,
``session.logout``, ``userDataStream.subscribe`` (after logon),
``userDataStream.subscribe.signature``, ``userDataStream.unsubscribe``, ``session.subscriptions``
(an optional ``v3/`` prefix is accepted). Signed methods are checked by :mod:`mock_ws.binance.auth`.
User-data events go to every session with an active subscription as
``{"subscriptionId": N, "event": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tickpipe.common.units import MS
from tickpipe.mock_ws.binance.auth import AccountKeys, check_time
from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.ws_market import MARKET_METHODS, market_result, market_weight
from tickpipe.mock_ws.history import (
    all_orders,
    my_trades,
    open_orders,
    order_status,
    test_order_result,
)
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected
from tickpipe.mock_ws.order_model import Order
from tickpipe.mock_ws.order_rules import mandatory

__all__ = ["ApiReply", "ApiSession", "WsApi", "order_record", "record_placed"]

_WEIGHTS = {
    "ping": 1,
    "time": 1,
    "order.place": 1,
    "order.status": 4,
    "order.cancel": 1,
    "openOrders.status": 6,
    "allOrders": 20,
    "myTrades": 20,
    "order.test": 1,
    "openOrders.cancelAll": 1,
    "account.status": 20,
    "userDataStream.subscribe.signature": 2,
    "userDataStream.unsubscribe": 2,
    "session.subscriptions": 2,
    "session.logon": 2,
    "session.status": 2,
    "session.logout": 2,
    "userDataStream.subscribe": 2,
}


#: Methods that need a signature (or a session.logon): checked before they run.
_SIGNED = frozenset(
    {
        "order.status",
        "order.cancel",
        "openOrders.status",
        "allOrders",
        "myTrades",
        "order.test",
        "openOrders.cancelAll",
        "account.status",
        "userDataStream.subscribe.signature",
    }
)


@dataclass
class ApiSession:
    """State of one WebSocket API connection."""

    conn_id: int
    return_rate_limits: bool = True
    subscription_id: int | None = None
    next_subscription_id: int = 0
    hide_rate_limits: bool = False  # this request asked for returnRateLimits=false
    weight_minute: int = -1
    weight_used: int = 2  # connecting costs 2
    order_windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    connected_ms: int = 0
    logon_key: str | None = None  # session.logon done with this Ed25519 key
    authorized_since: int | None = None


@dataclass(frozen=True)
class ApiReply:
    """The response to send, user-data deliveries, and the ground-truth order record if any."""

    response: dict[str, Any]
    deliveries: list[tuple[ApiSession, dict[str, Any]]]
    order_record: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # account events, unaddressed


def order_record(params: Mapping[str, Any], now_ns: int, conn: int | str) -> dict[str, Any]:
    """Start the ground-truth record of an order request, as a rejected one until placed.

    ``conn`` is the WebSocket API connection's id, or ``"rest"``.
    """
    qty = params.get("quantity")
    return {
        "client_order_id": params.get("newClientOrderId"),
        "order_id": None,
        "symbol": params.get("symbol"),
        "side": params.get("side"),
        "type": params.get("type"),
        "qty": None if qty is None else str(qty),
        "status": "REJECTED",
        "price": None,
        "ts": now_ns,
        "conn": conn,
    }


def record_placed(record: dict[str, Any], order: Order) -> None:
    """Complete ``record`` with the order the engine placed: ids, status, last fill price."""
    record.update(
        client_order_id=order.client_order_id,
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        qty=f"{order.orig_qty:f}",
        status=order.status,
        price=f"{order.fills[-1].price:f}" if order.fills else None,
        trade_ids=[f.trade_id for f in order.fills],
    )


class WsApi:
    """Dispatch WebSocket API requests for one account (one API key)."""

    def __init__(
        self,
        engine: MatchingEngine,
        *,
        api_key: str,
        api_secret: str,
        ed25519_keys: Mapping[str, Ed25519PublicKey] | None = None,
        feed: MarketFeed | None = None,
    ) -> None:
        self.engine = engine
        self.feed = feed
        self.keys = AccountKeys(api_key, api_secret, dict(ed25519_keys or {}))
        self.sessions: dict[int, ApiSession] = {}

    def open(
        self, conn_id: int, *, return_rate_limits: bool = True, connected_ms: int = 0
    ) -> ApiSession:
        session = ApiSession(
            conn_id, return_rate_limits=return_rate_limits, connected_ms=connected_ms
        )
        self.sessions[conn_id] = session
        return session

    def close(self, session: ApiSession) -> None:
        self.sessions.pop(session.conn_id, None)

    def subscribed(self) -> list[ApiSession]:
        return [s for s in self.sessions.values() if s.subscription_id is not None]

    def handle(self, session: ApiSession, text: str | bytes, now_ns: int) -> ApiReply:
        """Answer one request frame."""
        session.hide_rate_limits = False
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._error(session, None, OrderRejected(-1100, "Malformed JSON request."), None)
        if not isinstance(request, dict):
            return self._error(session, None, OrderRejected(-1100, "Malformed request."), None)
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(method, str) or not method:
            return self._error(session, request_id, mandatory("method"), None)
        method = method.removeprefix("v3/")
        if not isinstance(params, dict):
            return self._error(
                session, request_id, OrderRejected(-1100, "Parameter 'params' is malformed."), None
            )
        market = self.feed is not None and method in MARKET_METHODS
        if method not in _WEIGHTS and not market:
            legal = ", ".join(sorted(_WEIGHTS))
            error = OrderRejected(
                -1100,
                f"Illegal characters found in parameter 'method'; legal range is '{legal}'.",
            )
            return self._error(session, request_id, error, None)
        self._count(session, self._weight(method, params), now_ns, order=method == "order.place")
        session.hide_rate_limits = params.get("returnRateLimits") is False
        deliveries: list[tuple[ApiSession, dict[str, Any]]] = []
        events: list[dict[str, Any]] = []
        try:
            if method == "order.place":
                return self._order_place(session, request_id, params, now_ns)
            if method in _SIGNED:
                self._check(session, params, now_ns)
            if market:
                assert self.feed is not None
                result: Any = market_result(self.feed, method, params, now_ns // MS)
            elif method == "ping":
                result = {}
            elif method == "time":
                result = {"serverTime": now_ns // MS}
            elif method == "order.status":
                result = order_status(self.engine, params)
            elif method == "order.cancel":
                result, events = self.engine.cancel(params, now_ns)
                deliveries = self.fanout(events)
            elif method == "openOrders.status":
                result = open_orders(self.engine, params)
            elif method in ("allOrders", "myTrades"):
                history = all_orders if method == "allOrders" else my_trades
                result = history(self.engine.orders, params, self.engine.market.symbols)
            elif method == "order.test":
                result = test_order_result(self.engine, params, now_ns)
            elif method == "openOrders.cancelAll":
                result, events = self.engine.cancel_all(params, now_ns)
                deliveries = self.fanout(events)
            elif method == "account.status":
                result = self.engine.account(now_ns)
            elif method in ("session.logon", "session.status", "session.logout"):
                result = self._session(session, method, params, now_ns)
            elif method.startswith("userDataStream.subscribe"):
                if not method.endswith(".signature") and session.logon_key is None:
                    raise OrderRejected(
                        -2015, "Invalid API-key, IP, or permissions for action.", 401
                    )
                if session.subscription_id is not None:
                    raise OrderRejected(-2035, "User Data Stream subscription already active.")
                session.subscription_id = session.next_subscription_id
                session.next_subscription_id += 1
                result = {"subscriptionId": session.subscription_id}
            elif method == "userDataStream.unsubscribe":
                wanted = params.get("subscriptionId")
                active = session.subscription_id
                if wanted is not None and wanted != active:
                    raise OrderRejected(-2036, "User Data Stream subscription not active.")
                if active is not None:
                    event = {"e": "eventStreamTerminated", "E": now_ns // MS}
                    deliveries.append((session, {"subscriptionId": active, "event": event}))
                session.subscription_id = None
                result = {}
            else:  # session.subscriptions
                sub = session.subscription_id
                result = [] if sub is None else [{"subscriptionId": sub}]
        except OrderRejected as exc:
            return self._error(session, request_id, exc, None)
        return ApiReply(self._ok(session, request_id, result), deliveries, None, events)

    def fanout(self, events: list[dict[str, Any]]) -> list[tuple[ApiSession, dict[str, Any]]]:
        """Address user-data events to every session with an active subscription."""
        return [
            (s, {"subscriptionId": s.subscription_id, "event": event})
            for event in events
            for s in self.subscribed()
        ]

    def _check(self, session: ApiSession, params: Mapping[str, Any], now_ns: int) -> None:
        """Check a signed request; after session.logon, only ``timestamp`` is needed."""
        if session.logon_key is not None and not params.get("signature"):
            check_time(params, now_ns)
            return
        self.keys.check(params, now_ns)

    def _session(
        self, session: ApiSession, method: str, params: Mapping[str, Any], now_ns: int
    ) -> dict[str, Any]:
        """Apply session.logon / session.logout; return the session status result."""
        if method == "session.logon":
            key = params.get("apiKey")
            if key == self.keys.api_key and key not in self.keys.ed25519_keys:
                raise OrderRejected(-4056, "HMAC_SHA256 API key is not supported.")
            self.keys.check(params, now_ns)
            session.logon_key = str(key)
            session.authorized_since = now_ns // MS
        elif method == "session.logout":
            session.logon_key = session.authorized_since = None
        return {
            "apiKey": session.logon_key,
            "authorizedSince": session.authorized_since,
            "connectedSince": session.connected_ms,
            "returnRateLimits": session.return_rate_limits,
            "serverTime": now_ns // MS,
            "userDataStream": session.subscription_id is not None,
        }

    def _order_place(
        self, session: ApiSession, request_id: Any, params: Mapping[str, Any], now_ns: int
    ) -> ApiReply:
        record = order_record(params, now_ns, session.conn_id)
        try:
            self._check(session, params, now_ns)
            outcome = self.engine.place(params, now_ns)
        except OrderRejected as exc:
            record.update(code=exc.code, msg=exc.msg)
            return self._error(session, request_id, exc, record)
        record_placed(record, outcome.order)
        deliveries = self.fanout(outcome.events)
        reply = self._ok(session, request_id, outcome.result)
        return ApiReply(reply, deliveries, record, outcome.events)

    def _weight(self, method: str, params: Mapping[str, Any]) -> int:
        if method in MARKET_METHODS and self.feed is not None:
            return market_weight(method, params)
        if method == "order.test" and params.get("computeCommissionRates") is True:
            return 20
        return _WEIGHTS[method]

    def _count(self, session: ApiSession, weight: int, now_ns: int, *, order: bool) -> None:
        minute = now_ns // 60_000_000_000
        if minute != session.weight_minute:
            session.weight_minute, session.weight_used = minute, 0
        session.weight_used += weight
        if order:
            for name, span_ns in (("10S", 10_000_000_000), ("1D", 86_400_000_000_000)):
                window, count = session.order_windows.get(name, (-1, 0))
                current = now_ns // span_ns
                session.order_windows[name] = (current, count + 1 if window == current else 1)

    def _rate_limits(self, session: ApiSession) -> list[dict[str, Any]]:
        limits: list[dict[str, Any]] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
                "count": session.weight_used,
            }
        ]
        for name, interval, num, limit in (("10S", "SECOND", 10, 50), ("1D", "DAY", 1, 160000)):
            if name in session.order_windows:
                limits.insert(
                    len(limits) - 1,
                    {
                        "rateLimitType": "ORDERS",
                        "interval": interval,
                        "intervalNum": num,
                        "limit": limit,
                        "count": session.order_windows[name][1],
                    },
                )
        return limits

    def _ok(self, session: ApiSession, request_id: Any, result: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"id": request_id, "status": 200, "result": result}
        if session.return_rate_limits and not session.hide_rate_limits:
            out["rateLimits"] = self._rate_limits(session)
        return out

    def _error(
        self,
        session: ApiSession,
        request_id: Any,
        exc: OrderRejected,
        record: dict[str, Any] | None,
    ) -> ApiReply:
        out: dict[str, Any] = {
            "id": request_id,
            "status": exc.status,
            "error": {"code": exc.code, "msg": exc.msg},
        }
        if session.return_rate_limits and not session.hide_rate_limits:
            out["rateLimits"] = self._rate_limits(session)
        return ApiReply(out, [], record)
