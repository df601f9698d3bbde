"""Validate Alpaca order requests and render the REST order object (pure, no I/O).

Supported: ``type`` market, limit, stop and stop_limit (crypto: no stop), ``qty`` or
``notional`` (notional only for market orders), ``stop_price`` (stop types only; they take
day or gtc), ``time_in_force`` day/gtc/opg/cls/ioc/fok for stocks and gtc/ioc for crypto,
``client_order_id`` up to 128 characters. Other order types and classes are refused with
422, as the venue refuses invalid parameters. Times are integer nanoseconds rendered as
RFC 3339 strings; quantities and prices are decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tickpipe.mock_ws.alpaca.codec import rfc3339

__all__ = [
    "OPEN_STATUSES",
    "STOP_TYPES",
    "AlpacaOrder",
    "OrderRequest",
    "TradingError",
    "decimal_text",
    "parse_order_request",
]

OPEN_STATUSES = frozenset(
    {"new", "accepted", "pending_new", "partially_filled", "pending_cancel", "pending_replace"}
)
MAX_CLIENT_ORDER_ID = 128
_STOCK_TIF = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
_CRYPTO_TIF = frozenset({"gtc", "ioc"})
CODE_INVALID = 42210000


class TradingError(Exception):
    """The venue refuses a request: HTTP ``status`` and the body ``{"code","message"}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def _invalid(message: str) -> TradingError:
    return TradingError(422, CODE_INVALID, message)


def decimal_text(value: Decimal | None) -> str | None:
    """Render a decimal without exponent or trailing zeros (``None`` stays ``None``)."""
    if value is None:
        return None
    return f"{value.normalize():f}"


def _decimal(body: Mapping[str, Any], name: str) -> Decimal | None:
    raw = body.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise _invalid(f"invalid {name}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _invalid(f"invalid {name}") from None
    if not value.is_finite() or value <= 0:
        raise _invalid(f"{name} must be > 0")
    return value


@dataclass(frozen=True)
class OrderRequest:
    """A validated ``POST /v2/orders`` body."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    client_order_id: str | None
    extended_hours: bool
    stop_price: Decimal | None = None


STOP_TYPES = frozenset({"stop", "stop_limit"})
_LIMIT_TYPES = frozenset({"limit", "stop_limit"})


def parse_order_request(body: Any, *, crypto: bool) -> OrderRequest:
    """Validate an order body; raise :class:`TradingError` (422) on invalid parameters."""
    if not isinstance(body, dict):
        raise _invalid("request body format is invalid")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise _invalid("symbol is required")
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise _invalid("invalid side")
    order_type = body.get("type", body.get("order_type"))
    if order_type not in ("market", "limit", "stop", "stop_limit"):
        raise _invalid(f"order type {order_type!r} is not supported")
    if crypto and order_type == "stop":
        raise _invalid("invalid order type for crypto order")
    order_class = body.get("order_class") or "simple"
    if order_class != "simple":
        raise _invalid(f"order_class {order_class!r} is not supported")
    tif = body.get("time_in_force")
    if tif not in (_CRYPTO_TIF if crypto else _STOCK_TIF):
        raise _invalid(f"invalid {'crypto ' if crypto else ''}time_in_force")
    qty, notional = _decimal(body, "qty"), _decimal(body, "notional")
    if qty is not None and notional is not None:
        raise _invalid("only one of qty or notional may be given")
    if qty is None and notional is None:
        raise _invalid("qty or notional is required")
    if notional is not None and order_type != "market":
        raise _invalid("notional orders must be market orders")
    limit_price = _decimal(body, "limit_price")
    if order_type in _LIMIT_TYPES and limit_price is None:
        raise _invalid(f"{order_type} orders require limit_price")
    if order_type not in _LIMIT_TYPES and limit_price is not None:
        raise _invalid(f"{order_type} orders must not have limit_price")
    stop_price = _decimal(body, "stop_price")
    if order_type in STOP_TYPES:
        if stop_price is None:
            raise _invalid(f"{order_type} orders require stop_price")
        if tif not in ("day", "gtc"):
            raise _invalid(f"invalid time_in_force for {order_type} orders")
    elif stop_price is not None:
        raise _invalid(f"{order_type} orders must not have stop_price")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None:
        if not isinstance(client_order_id, str) or not client_order_id:
            raise _invalid("invalid client_order_id")
        if len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise _invalid("client_order_id must be no more than 128 characters")
    extended = body.get("extended_hours", False)
    if not isinstance(extended, bool):
        raise _invalid("invalid extended_hours")
    if extended and not crypto and (order_type != "limit" or tif != "day"):
        # Alpaca, "Extended Hours Trading": only limit orders with time_in_force day
        raise _invalid("extended hours order must be DAY limit orders")
    return OrderRequest(
        symbol=symbol,
        side=side,
        type=order_type,
        time_in_force=tif,
        qty=qty,
        notional=notional,
        limit_price=limit_price,
        client_order_id=client_order_id,
        extended_hours=extended,
        stop_price=stop_price,
    )


def _time(ns: int | None) -> str | None:
    return None if ns is None else rfc3339(ns)


@dataclass
class AlpacaOrder:
    """One order's state, rendered by :meth:`to_json` as the REST order object."""

    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    asset_class: str  # "us_equity" or "crypto"
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    extended_hours: bool
    created_ns: int
    status: str = "new"
    filled_qty: Decimal = Decimal(0)
    filled_notional: Decimal = Decimal(0)
    updated_ns: int = 0
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    stop_price: Decimal | None = None
    #: False while a stop order waits for the market to reach its stop price
    triggered: bool = True

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def filled_avg_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return (self.filled_notional / self.filled_qty).quantize(Decimal("0.000000001"))

    def remaining(self) -> Decimal | None:
        """Return the unfilled quantity (``None`` for a notional order not filled yet)."""
        return None if self.qty is None else self.qty - self.filled_qty

    def to_json(self) -> dict[str, Any]:
        """Return the order object as the Trading API v2 renders it."""
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns or self.created_ns),
            "submitted_at": rfc3339(self.created_ns),
            "filled_at": _time(self.filled_ns),
            "expired_at": _time(self.expired_ns),
            "canceled_at": _time(self.canceled_ns),
            "failed_at": _time(self.failed_ns),
            "replaced_at": _time(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "notional": decimal_text(self.notional),
            "qty": decimal_text(self.qty),
            "filled_qty": decimal_text(self.filled_qty) or "0",
            "filled_avg_price": decimal_text(self.filled_avg_price),
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": None,
            "time_in_force": self.time_in_force,
            "limit_price": decimal_text(self.limit_price),
            "stop_price": decimal_text(self.stop_price),
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "expires_at": None,
        }
