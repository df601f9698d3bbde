"""Build Alpaca Trading API requests and classify its answers (pure: no I/O, no clock).

* :func:`order_body` is the ``POST /v2/orders`` body of an intent (``time_in_force`` ``gtc`` for
  crypto symbols, which contain ``/``, else ``day``, unless the intent asks for IOC or FOK);
  the client order id is the intent's; a quote-quantity MARKET order is sent as ``notional``, a
  STOP order as type ``stop`` and a STOP_LIMIT one as ``stop_limit``, with ``stop_price``.
  :func:`order_refusal` says what Alpaca cannot take (post-only, FOK on crypto, a stop-market
  order on crypto, IOC/FOK on a stop order).
* :func:`classify` turns an HTTP answer into its body or the error it means: 401 (or a 403 that
  is not about funds) :class:`AuthError`, 429 :class:`RateLimited` (``Retry-After`` seconds or the
  ``X-RateLimit-Reset`` epoch), 5xx :class:`AmbiguousOutcome`, 422 "client_order_id must be
  unique" :class:`DuplicateOrder` (the order exists: query it), 404 :class:`OrderNotFound`, any
  other refusal :class:`OrderRejected`.
* :func:`order_result` converts an Alpaca order object once into the Binance-shaped order dict
  the ledger records (``status`` mapped to the Binance-style enum, ``executedQty``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tickpipe.common.decimals import finite_decimal
from tickpipe.common.errors import venue_refusal
from tickpipe.common.order_spec import intent_problem
from tickpipe.common.schema import OrderIntent
from tickpipe.common.units import MS
from tickpipe.venues.alpaca.wire import map_status, parse_rfc3339

__all__ = [
    "DUPLICATE_MESSAGE",
    "auth_headers",
    "classify",
    "map_status",
    "order_body",
    "order_refusal",
    "order_result",
    "replace_body",
    "rfc3339_ms",
    "time_in_force_for",
]

DUPLICATE_MESSAGE = "client_order_id must be unique"
_FUNDS_CODE = 40310000


def auth_headers(api_key: str, api_secret: str) -> dict[str, str]:
    """Return the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers."""
    return {"APCA-API-KEY-ID": api_key, "APCA-API-SECRET-KEY": api_secret}


def time_in_force_for(symbol: str) -> str:
    """Return ``gtc`` for a crypto pair (``BTC/USD``), ``day`` for a stock."""
    return "gtc" if "/" in symbol else "day"


def order_refusal(intent: OrderIntent) -> str | None:
    """Return why Alpaca cannot take ``intent`` as it is, or ``None``.

    Alpaca has no post-only orders; crypto takes ``gtc`` and ``ioc``, stocks also ``fok``.
    Crypto has market, limit and stop_limit orders, no stop-market ones; a stop order is
    sent good for the day (stocks) or till cancelled (crypto), never IOC or FOK. A ``notional``
    (quote-quantity) order is a market order (fractional shares; the venue refuses a
    non-fractionable asset).
    """
    problem = intent_problem(intent, "alpaca")
    if problem is not None:
        return problem
    if intent.post_only:
        return "alpaca: no post-only orders (Binance's LIMIT_MAKER has no Alpaca equivalent)"
    if intent.order_type.startswith("TAKE_PROFIT"):
        return "alpaca: no take-profit orders outside a bracket (use a LIMIT order)"
    crypto = "/" in intent.symbol
    if intent.time_in_force == "FOK" and crypto:
        return f"alpaca: crypto orders take GTC or IOC, not FOK ({intent.symbol})"
    if intent.order_type == "STOP" and crypto:
        return f"alpaca: crypto has no stop-market orders, use STOP_LIMIT ({intent.symbol})"
    if intent.order_type == "STOP_LIMIT" and intent.time_in_force in ("IOC", "FOK"):
        return f"alpaca: a stop order rests until triggered: GTC, not {intent.time_in_force}"
    return None


def _time_in_force(intent: OrderIntent) -> str:
    """GTC (or none, a MARKET order) keeps the asset's default; IOC and FOK are sent as asked."""
    if intent.time_in_force in ("IOC", "FOK"):
        return intent.time_in_force.lower()
    return time_in_force_for(intent.symbol)


def order_body(intent: OrderIntent) -> dict[str, Any]:
    """Build the ``POST /v2/orders`` body of ``intent`` (checked by :func:`order_refusal`)."""
    body: dict[str, Any] = {
        "symbol": intent.symbol,
        "side": intent.side.lower(),
        "type": _TYPES[intent.order_type],
        "time_in_force": _time_in_force(intent),
        "client_order_id": intent.client_order_id,
    }
    if intent.quote_qty:
        body["notional"] = intent.quote_qty
    else:
        body["qty"] = intent.qty
    if intent.order_type in ("LIMIT", "STOP_LIMIT"):
        body["limit_price"] = intent.price
    if intent.order_type in ("STOP", "STOP_LIMIT"):
        body["stop_price"] = intent.stop_price
    return body


def replace_body(intent: OrderIntent) -> dict[str, Any]:
    """Build the ``PATCH /v2/orders/{id}`` body that gives a working order ``intent``'s terms.

    Alpaca keeps the symbol, side and type; the quantity, prices and time in force are the new
    order's, and so is the client order id (the intent's).
    """
    body = {k: v for k, v in order_body(intent).items() if k not in ("symbol", "side", "type")}
    body.pop("notional", None)
    return body


#: The intent's order type as Alpaca names it.
_TYPES = {"MARKET": "market", "LIMIT": "limit", "STOP": "stop", "STOP_LIMIT": "stop_limit"}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _retry_after_s(headers: Mapping[str, str], now_s: float) -> float:
    lowered = {k.lower(): v for k, v in headers.items()}
    after = _number(lowered.get("retry-after"))
    if after is not None:
        return max(0.0, after)
    reset = _number(lowered.get("x-ratelimit-reset"))
    if reset is not None:
        return max(0.0, reset - now_s)
    return 1.0


def classify(
    status: int, body: Any, headers: Mapping[str, str], *, now_s: float
) -> dict[str, Any] | list[Any] | None:
    """Return the body of a successful answer, or raise what the answer means (module doc)."""
    if 200 <= status < 300:
        return body if isinstance(body, dict | list) else None
    fields = body if isinstance(body, Mapping) else {}
    code = fields.get("code")
    code = code if isinstance(code, int) else None
    message = str(fields.get("message", "")) or f"HTTP {status}"
    text = f"{message} (code {code}, status {status})"
    raise venue_refusal(
        text,
        code=code,
        status=status,
        auth=status == 401
        or (status == 403 and code != _FUNDS_CODE and "insufficient" not in message),
        retry_after_s=_retry_after_s(headers, now_s) if status == 429 else None,
        ambiguous=status >= 500,
        duplicate=status == 422 and DUPLICATE_MESSAGE in message,
        not_found=status == 404,
    )


def rfc3339_ms(text: Any) -> int:
    """Return epoch milliseconds of an RFC 3339 time (up to ns digits); 0 if unreadable."""
    if not isinstance(text, str):
        return 0
    try:
        return parse_rfc3339(text) // MS
    except ValueError:
        return 0


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    return finite_decimal(str(value))


def order_result(order: Mapping[str, Any]) -> dict[str, Any]:
    """Convert an Alpaca order object into the Binance-shaped order dict the ledger records."""
    filled = _decimal(order.get("filled_qty")) or Decimal(0)
    average = _decimal(order.get("filled_avg_price"))
    quote = filled * average if average is not None else Decimal(0)
    return {
        "symbol": str(order.get("symbol", "")),
        "clientOrderId": str(order.get("client_order_id", "")),
        "orderId": str(order.get("id", "")),
        "status": map_status(str(order.get("status", ""))),
        "origQty": str(order.get("qty") or ""),
        "executedQty": f"{filled:f}",
        "cummulativeQuoteQty": f"{quote:f}",
        "price": str(order.get("limit_price") or "0"),
        "side": str(order.get("side", "")).upper(),
        "type": str(order.get("type") or order.get("order_type") or "").upper(),
        "updateTime": rfc3339_ms(order.get("updated_at")),
    }
