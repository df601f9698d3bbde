"""Decide, sign and follow orders: the trader's pure core (no I/O, no clock, no asyncio).

Everything here takes its inputs as values (time as integer nanoseconds or milliseconds) and returns
values, so the shell in :mod:`trader.shell` only moves data between Redis, the venue and this
module.

* :func:`check_signal` / :class:`RiskLimits` say whether a signal may become an order.
* :func:`build_intent` turns a signal into the :class:`~common.schema.OrderIntent` that is recorded
  before anything is sent; its client order id is derived from the signal id, so the same signal
  always maps to the same venue order.
* :func:`place_params` / :func:`status_params` build the signed WebSocket API requests.
* :func:`result_of` classifies a WebSocket API answer: the result, or one of the errors below.
* :class:`OrderTracker` applies order updates to an order state machine and keeps positions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from common.binance import client_order_id_for, hmac_signature, ws_api_payload
from common.errors import AmbiguousOutcome, AuthError, RateLimited, VenueError
from common.schema import OrderIntent, Signal

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "DuplicateOrder",
    "OrderNotFound",
    "OrderRejected",
    "OrderState",
    "OrderTracker",
    "RiskLimits",
    "advance",
    "build_intent",
    "check_signal",
    "place_params",
    "result_of",
    "sign_params",
    "status_params",
]

DEFAULT_RECV_WINDOW_MS = 5000

#: Order statuses after which nothing changes any more.
TERMINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"})
#: Order statuses of a live order.
ACTIVE = frozenset({"NEW", "PENDING_NEW", "PARTIALLY_FILLED", "PENDING_CANCEL"})
_KNOWN = TERMINAL | ACTIVE

# Binance error codes (protocols.md §2.3, §2.5).
_AUTH_CODES = frozenset({-2014, -2015, -1022})
_RATE_CODES = frozenset({-1003, -1015})
_UNKNOWN_OUTCOME_CODES = frozenset({-1007, -1006})
_DUPLICATE_CODE = -2010
_NO_SUCH_ORDER_CODE = -2013


class OrderRejected(VenueError):
    """The venue refused the request for good: no order exists because of it."""


class DuplicateOrder(VenueError):
    """The venue already has an open order with this client order id: query it, never resend."""


class OrderNotFound(VenueError):
    """The venue has no order with this client order id (``-2013``)."""


# -- risk ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits every order must pass; ``kill_switch`` refuses every new order."""

    max_order_qty: Decimal | None = None
    kill_switch: bool = False
    symbols: frozenset[str] | None = None


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def check_signal(signal: Signal, limits: RiskLimits) -> str | None:
    """Return why ``signal`` must not become an order, or ``None`` if it may."""
    if signal.action != "place":
        return f"action {signal.action!r} is not supported (only 'place')"
    if signal.side not in ("buy", "sell"):
        return f"side must be 'buy' or 'sell', got {signal.side!r}"
    if limits.symbols is not None and signal.symbol not in limits.symbols:
        return f"symbol {signal.symbol!r} is not configured"
    qty = _decimal(signal.qty)
    if qty is None or qty <= 0:
        return f"quantity must be a positive number, got {signal.qty!r}"
    if limits.kill_switch:
        return "kill switch is on"
    if limits.max_order_qty is not None and qty > limits.max_order_qty:
        return f"quantity {signal.qty} exceeds the limit {limits.max_order_qty}"
    return None


def build_intent(signal: Signal, *, ts_intent: int) -> OrderIntent:
    """Build the market-order intent for ``signal``; its id is derived from the signal id."""
    return OrderIntent(
        client_order_id=client_order_id_for(signal.signal_id),
        signal_id=signal.signal_id,
        venue=signal.venue,
        symbol=signal.symbol,
        side=signal.side,
        order_type="MARKET",
        qty=signal.qty,
        price=None,
        ts_signal=signal.ts_signal,
        ts_intent=ts_intent,
    )


# -- requests -----------------------------------------------------------------------------------
def sign_params(
    params: Mapping[str, Any],
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, Any]:
    """Add ``apiKey``, ``timestamp``, ``recvWindow`` and the HMAC ``signature`` to ``params``."""
    signed = {**params, "apiKey": api_key, "timestamp": timestamp_ms, "recvWindow": recv_window_ms}
    signed["signature"] = hmac_signature(api_secret, ws_api_payload(signed))
    return signed


def place_params(
    intent: OrderIntent,
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, Any]:
    """Build the signed ``order.place`` params for a MARKET ``intent``."""
    params: dict[str, Any] = {
        "symbol": intent.symbol,
        "side": intent.side.upper(),
        "type": intent.order_type,
        "quantity": intent.qty,
        "newClientOrderId": intent.client_order_id,
        "newOrderRespType": "RESULT",
    }
    return sign_params(
        params,
        api_key=api_key,
        api_secret=api_secret,
        timestamp_ms=timestamp_ms,
        recv_window_ms=recv_window_ms,
    )


def status_params(
    symbol: str,
    client_order_id: str,
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int,
    recv_window_ms: int = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, Any]:
    """Build the signed ``order.status`` params that look an order up by its client id."""
    return sign_params(
        {"symbol": symbol, "origClientOrderId": client_order_id},
        api_key=api_key,
        api_secret=api_secret,
        timestamp_ms=timestamp_ms,
        recv_window_ms=recv_window_ms,
    )


# -- answers ------------------------------------------------------------------------------------
def _retry_after_s(error: Mapping[str, Any], now_ms: int | None) -> float:
    data = error.get("data")
    retry_at = data.get("retryAfter") if isinstance(data, Mapping) else None
    if isinstance(retry_at, int) and now_ms is not None:
        return max(0.0, (retry_at - now_ms) / 1000)
    return 1.0


def result_of(response: Mapping[str, Any], *, now_ms: int | None = None) -> dict[str, Any]:
    """Return the ``result`` of a WebSocket API answer, or raise what the answer means.

    Raises :class:`AuthError` (bad key or signature), :class:`RateLimited` (429/418),
    :class:`AmbiguousOutcome` (5xx, ``-1007``: it may have happened), :class:`DuplicateOrder`
    (``-2010`` "Duplicate order sent."), :class:`OrderNotFound` (``-2013``) or
    :class:`OrderRejected` (any other refusal).
    """
    status = response.get("status")
    status = status if isinstance(status, int) else 0
    error = response.get("error")
    if 200 <= status < 300 and isinstance(response.get("result"), Mapping):
        return dict(response["result"])
    if not isinstance(error, Mapping):
        if status >= 500 or status == 0:
            raise AmbiguousOutcome(
                f"venue answered status {status} without a result", status=status
            )
        raise OrderRejected(f"venue answered status {status} without a result", status=status)
    code = error.get("code")
    code = code if isinstance(code, int) else None
    msg = str(error.get("msg", ""))
    text = f"{msg} (code {code}, status {status})"
    if status == 401 or code in _AUTH_CODES:
        raise AuthError(text, code=code, status=status)
    if status in (429, 418) or code in _RATE_CODES:
        raise RateLimited(
            text, retry_after_s=_retry_after_s(error, now_ms), code=code, status=status
        )
    if status >= 500 or code in _UNKNOWN_OUTCOME_CODES:
        raise AmbiguousOutcome(text, code=code, status=status)
    if code == _DUPLICATE_CODE and "duplicate" in msg.lower():
        raise DuplicateOrder(text, code=code, status=status)
    if code == _NO_SUCH_ORDER_CODE:
        raise OrderNotFound(text, code=code, status=status)
    raise OrderRejected(text, code=code, status=status)


# -- order life and positions -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderState:
    """What we know of one order; ``filled_qty`` is cumulative and never goes down."""

    client_order_id: str
    symbol: str
    side: str
    status: str = "NEW"
    order_id: str = ""
    qty: str = "0"
    filled_qty: str = "0"
    ts_event: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderState:
        return cls(
            client_order_id=str(data["client_order_id"]),
            symbol=str(data["symbol"]),
            side=str(data["side"]).lower(),
            status=str(data.get("status", "NEW")),
            order_id=str(data.get("order_id", "")),
            qty=str(data.get("qty", "0")),
            filled_qty=str(data.get("filled_qty", "0")),
            ts_event=int(data.get("ts_event", 0)),
        )


def _next_status(current: str, reported: str) -> str:
    """Apply the state machine: terminal states stay; a live state never moves backwards."""
    if current in TERMINAL or reported not in _KNOWN:
        return current
    if reported in TERMINAL:
        return reported
    if current == "PARTIALLY_FILLED" and reported in ("NEW", "PENDING_NEW"):
        return current
    return reported


class OrderTracker:
    """Follow orders through NEW → PARTIALLY_FILLED → FILLED / CANCELED / REJECTED / EXPIRED.

    Positions (signed base quantity per symbol) move by the growth of each order's cumulative
    filled quantity, so an acknowledgement and the order updates describing the same fills, or a
    replayed update, never count a fill twice.
    """

    def __init__(self, positions: Mapping[str, Decimal] | None = None) -> None:
        self.orders: dict[str, OrderState] = {}
        self.positions: dict[str, Decimal] = dict(positions or {})

    def position(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, Decimal(0))

    def apply(
        self,
        previous: OrderState,
        *,
        status: str,
        filled_qty: str,
        order_id: str = "",
        qty: str = "",
        ts_event: int = 0,
    ) -> tuple[OrderState, Decimal]:
        """Apply one report on an order and keep the result; return it and the position change."""
        state, delta = advance(
            previous,
            status=status,
            filled_qty=filled_qty,
            order_id=order_id,
            qty=qty,
            ts_event=ts_event,
        )
        self.commit(state, delta)
        return state, delta

    def commit(self, state: OrderState, delta: Decimal) -> None:
        """Keep ``state`` and move its symbol's position by ``delta``."""
        self.orders[state.client_order_id] = state
        if delta:
            self.positions[state.symbol] = self.position(state.symbol) + delta


def advance(
    previous: OrderState,
    *,
    status: str,
    filled_qty: str,
    order_id: str = "",
    qty: str = "",
    ts_event: int = 0,
) -> tuple[OrderState, Decimal]:
    """Return the order's state after one report and the signed position change it implies."""
    old_filled = _decimal(previous.filled_qty) or Decimal(0)
    new_filled = _decimal(filled_qty)
    if new_filled is None or new_filled < old_filled:
        new_filled = old_filled
    grown = new_filled - old_filled
    state = replace(
        previous,
        status=_next_status(previous.status, status.upper()),
        order_id=order_id or previous.order_id,
        qty=qty or previous.qty,
        filled_qty=str(new_filled) if grown else previous.filled_qty,
        ts_event=max(ts_event, previous.ts_event),
    )
    return state, grown if previous.side == "buy" else -grown
