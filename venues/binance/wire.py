"""Mirror Binance Spot's wire shapes and convert them once into tickpipe events (pure, no I/O).

Used by the rest of :mod:`venues.binance` (stream names, signing, parsing) and by the mock
exchange's Binance twin (signature checks, payload shapes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import OrderUpdate, Trade
from tickpipe.common.units import MS

__all__ = [
    "AUTH_ERROR_CODES",
    "RATE_LIMIT_CODES",
    "decimal_text",
    "hmac_signature",
    "is_reply",
    "parse_execution_report",
    "parse_trade",
    "retry_after_s",
    "stream_name",
    "unwrap",
    "ws_api_payload",
]


#: Error codes of a wrong API key or signature (never retried; protocols.md §2.3).
AUTH_ERROR_CODES = frozenset({-2014, -2015, -1022})
#: Error codes of a rate limit: too many requests, too many new orders (protocols.md §2.5).
RATE_LIMIT_CODES = frozenset({-1003, -1015})


def retry_after_s(error: Mapping[str, Any], now_ms: int | None, *, unknown_s: float) -> float:
    """Seconds until the ``retryAfter`` (epoch ms) of a rate-limit error's ``data``;
    ``unknown_s`` when the error names no time (or ``now_ms`` is not known)."""
    data = error.get("data")
    retry_at = data.get("retryAfter") if isinstance(data, Mapping) else None
    if isinstance(retry_at, int) and not isinstance(retry_at, bool) and now_ms is not None:
        return max(0.0, (retry_at - now_ms) / 1000)
    return unknown_s


def stream_name(symbol: str, channel: str) -> str:
    """Binance stream name: lower-case symbol, ``@``, channel (``trade``, ``depth@100ms``...)."""
    return f"{symbol.lower()}@{channel}"


def ws_api_payload(params: Mapping[str, Any]) -> str:
    """The WebSocket API signing payload: params except ``signature``, sorted, ``k=v&...``."""
    return "&".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items()) if k != "signature")


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hmac_signature(secret: str, payload: str) -> str:
    """HMAC-SHA256 of ``payload`` as lower-case hex."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def is_reply(obj: Any) -> bool:
    """Tell whether a decoded frame is a reply to a request (``{"id":..,"result"|"error":..}``)."""
    return isinstance(obj, Mapping) and "id" in obj and "e" not in obj


def unwrap(frame: str | bytes) -> tuple[str | None, Any]:
    """Decode one frame; return ``(stream, payload)`` for combined frames, ``(None, obj)`` else."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"frame is not JSON: {exc}") from exc
    if isinstance(obj, dict) and "stream" in obj and "data" in obj:
        return str(obj["stream"]), obj["data"]
    if isinstance(obj, dict) and "subscriptionId" in obj and "event" in obj:
        return None, obj["event"]
    return None, obj


def _req(data: Mapping[str, Any], key: str, kind: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise DecodeError(f"{kind} is missing field {key!r}") from None


_INF = float("inf")


def decimal_text(value: Any, what: str, *, signed: bool = False) -> str:
    """Return ``value``, a finite decimal string (non-negative unless ``signed``), as sent.

    ``float`` checks it (far cheaper than ``Decimal``; the text is kept as sent); it also reads
    ``1_000``, ``inf`` and ``nan``, which are no venue decimals and are refused here.
    """
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a decimal string, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise DecodeError(f"{what} is not a number: {value!r}") from None
    if not (-_INF < number < _INF if signed else 0 <= number < _INF) or "_" in value:
        kind = "a finite decimal" if signed else "a finite, non-negative decimal"
        raise DecodeError(f"{what} must be {kind}: {value!r}")
    return value


def parse_trade(data: Mapping[str, Any], *, ts_recv: int, src: str = "") -> Trade:
    """Convert a ``<symbol>@trade`` payload into a :class:`Trade`."""
    if not isinstance(data, Mapping) or data.get("e") != "trade":
        raise DecodeError("not a trade payload")
    price = decimal_text(_req(data, "p", "trade"), "trade price")
    qty = decimal_text(_req(data, "q", "trade"), "trade quantity")
    if float(price) <= 0:
        raise DecodeError(f"trade price must be positive: {price!r}")
    trade_time = _req(data, "T", "trade")
    trade_id = _req(data, "t", "trade")
    if not isinstance(trade_time, int) or not isinstance(trade_id, int):
        raise DecodeError("trade time and id must be integers")
    if isinstance(trade_time, bool) or isinstance(trade_id, bool) or min(trade_time, trade_id) < 0:
        raise DecodeError(
            f"trade time and id must be non-negative integers: {trade_time!r}, {trade_id!r}"
        )
    symbol = _req(data, "s", "trade")
    if not isinstance(symbol, str) or not (symbol.isascii() and symbol.isalnum()):
        raise DecodeError(f"trade symbol must be letters and digits: {symbol!r}")
    return Trade(
        venue="binance",
        symbol=symbol,
        trade_id=str(trade_id),
        price=price,
        qty=qty,
        # m = buyer is the maker, so the aggressor sold.
        side="sell" if _req(data, "m", "trade") else "buy",
        ts_event=trade_time * MS,
        ts_recv=ts_recv,
        src=src,
    )


def parse_execution_report(data: Mapping[str, Any], *, ts_recv: int) -> OrderUpdate:
    """Convert an ``executionReport`` user-data event into an :class:`OrderUpdate`."""
    if not isinstance(data, Mapping) or data.get("e") != "executionReport":
        raise DecodeError("not an executionReport")
    exec_type = str(_req(data, "x", "executionReport"))
    # On a cancel, ``c`` is the cancel request's id and ``C`` the order's own id.
    original = data.get("C") or ""
    client_order_id = original if exec_type == "CANCELED" and original else data.get("c", "")
    return OrderUpdate(
        venue="binance",
        symbol=str(_req(data, "s", "executionReport")),
        client_order_id=str(client_order_id),
        order_id=str(_req(data, "i", "executionReport")),
        side=str(_req(data, "S", "executionReport")).lower(),
        order_type=str(_req(data, "o", "executionReport")),
        status=str(_req(data, "X", "executionReport")),
        exec_type=exec_type,
        qty=str(_req(data, "q", "executionReport")),
        price=str(data.get("p", "0")),
        filled_qty=str(_req(data, "z", "executionReport")),
        last_qty=str(data.get("l", "0")),
        last_price=str(data.get("L", "0")),
        cum_quote=str(data.get("Z", "0")),
        trade_id=str(data.get("t", -1)),
        ts_event=int(_req(data, "E", "executionReport")) * MS,
        ts_recv=ts_recv,
    )
