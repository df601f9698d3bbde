"""Mirror Alpaca's stream shapes and convert them once into tickpipe events (pure, no I/O).

A raw entry's payload is decoded by :func:`decode_payload`: kind ``ws`` holds JSON text (numbers
keep their exact text: they are decoded as strings), kind ``ws-binary`` holds the base64 of a
msgpack frame (timestamps are msgpack Timestamp extensions). Every parser accepts both forms:
decimals are strings (JSON) or numbers (msgpack, rendered with ``repr``), times are RFC 3339
strings or msgpack Timestamps, and every malformed message raises
:class:`common.errors.DecodeError` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgpack

from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import Bar, OrderUpdate, Quote, Trade
from tickpipe.common.units import NS_PER_S

__all__ = [
    "BAR_INTERVAL",
    "book_levels",
    "decimal_text",
    "decode_payload",
    "map_status",
    "parse_bar",
    "parse_quote",
    "parse_rfc3339",
    "parse_time",
    "parse_trade",
    "parse_trade_update",
    "rfc3339",
    "trade_update_key",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

#: Bar message type -> interval of the :class:`Bar` it becomes.
BAR_INTERVAL = {"b": "1m", "u": "1m", "d": "1d"}

#: Alpaca order status -> the trader's (Binance-style) status; any other is upper-cased.
_STATUS = {
    "new": "NEW",
    "accepted": "NEW",
    "pending_new": "NEW",
    "accepted_for_bidding": "NEW",
    "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED",
    "canceled": "CANCELED",
    "done_for_day": "CANCELED",
    "replaced": "CANCELED",
    "expired": "EXPIRED",
    "rejected": "REJECTED",
    "pending_cancel": "PENDING_CANCEL",
}
_EXEC_TYPE = {"fill": "TRADE", "partial_fill": "TRADE", "new": "NEW", "canceled": "CANCELED"}
_CRYPTO_QUOTES = ("USDT", "USDC", "USD", "BTC")
_MAX_EXPONENT = 40  # a decimal written 1e-05 is rendered 0.00001; 1e999999 is refused
_MAX_ID = 2**64  # trade ids are checkpointed as msgpack integers


def decode_payload(kind: str, data: str) -> Any:
    """Decode a raw entry's ``data``: ``ws`` = JSON text, ``ws-binary`` = base64 msgpack."""
    if kind == "ws":
        try:
            return json.loads(data, parse_float=str, parse_int=str, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"frame is not JSON: {exc}") from exc
    if kind == "ws-binary":
        try:
            blob = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DecodeError(f"binary frame is not base64: {exc}") from exc
        try:
            return msgpack.unpackb(blob, raw=False, timestamp=0, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise DecodeError(f"binary frame is not msgpack: {exc!r}") from exc
    raise DecodeError(f"unknown raw frame kind {kind!r}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decimal_text(value: Any, what: str) -> str:
    """Return a finite, non-negative number as plain decimal text (JSON text kept as sent)."""
    if isinstance(value, bool):
        raise DecodeError(f"{what} must be a number, got {value!r}")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DecodeError(f"{what} must be finite: {value!r}")
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise DecodeError(f"{what} must be a number, got {value!r}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise DecodeError(f"{what} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0 or "_" in text or text != text.strip():
        raise DecodeError(f"{what} must be a finite, non-negative decimal: {value!r}")
    if "e" in text or "E" in text:
        if not -_MAX_EXPONENT <= int(number.as_tuple().exponent) <= _MAX_EXPONENT:
            raise DecodeError(f"{what} exponent is out of range: {value!r}")
        text = format(number, "f")
    return text


def book_levels(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    """Read one side of an order book (``o``) message, ``[{"p": price, "s": size}...]``, as
    (price, size) decimal strings; a malformed side raises :class:`DecodeError` naming ``what``."""
    if not isinstance(value, list):
        raise DecodeError(f"order book {what} must be a list, got {value!r}")
    out = []
    for level in value:
        if not isinstance(level, Mapping):
            raise DecodeError(f"order book {what} level must be an object, got {level!r}")
        price = decimal_text(level.get("p"), f"order book {what} level price")
        out.append((price, decimal_text(level.get("s"), f"order book {what} level size")))
    return tuple(out)


def _int_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DecodeError(f"{what} must be an integer, got {value!r}")
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= 20) or int(text) >= _MAX_ID:
        raise DecodeError(f"{what} must be an integer in [0, 2**64), got {value!r}")
    return str(int(text))


def rfc3339(ns: int) -> str:
    """Write nanoseconds since the epoch as an RFC 3339 UTC time (trailing zeros dropped)."""
    seconds, frac = divmod(ns, NS_PER_S)
    base = (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 time with a zone (up to nanoseconds) into nanoseconds since the epoch."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    frac_ns = 0
    if "." in value:
        head, rest = value.split(".", 1)
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        if not digits or len(digits) > 9:
            raise ValueError(f"bad fraction in {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        value = head + rest
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None or "T" not in value.upper():
        raise ValueError(f"time {text!r} is not RFC 3339 with a zone")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + frac_ns


def parse_time(value: Any, what: str = "time") -> int:
    """Return nanoseconds since the epoch of an RFC 3339 string or a msgpack Timestamp."""
    if isinstance(value, msgpack.Timestamp):
        ns: int = value.to_unix_nano()
        return ns
    if isinstance(value, str):
        try:
            return parse_rfc3339(value)
        except ValueError as exc:
            raise DecodeError(f"{what} is not an RFC 3339 time: {value!r}") from exc
    raise DecodeError(f"{what} must be an RFC 3339 string or a Timestamp, got {value!r}")


def _req(msg: Mapping[str, Any], key: str, kind: str) -> Any:
    try:
        return msg[key]
    except KeyError:
        raise DecodeError(f"{kind} is missing field {key!r}") from None


def _symbol(msg: Mapping[str, Any], kind: str) -> str:
    symbol = _req(msg, "S", kind)
    if (
        not isinstance(symbol, str)
        or not symbol
        or not symbol.isascii()
        or not symbol.isprintable()
    ):
        raise DecodeError(f"{kind} symbol must be a non-empty ASCII string: {symbol!r}")
    if " " in symbol:
        raise DecodeError(f"{kind} symbol has a space: {symbol!r}")
    return symbol


def _check(msg: Any, t: str, kind: str) -> Mapping[str, Any]:
    if not isinstance(msg, Mapping) or msg.get("T") != t:
        raise DecodeError(f"not a {kind} message")
    return msg


def parse_trade(msg: Any, *, ts_recv: int, src: str = "") -> Trade:
    """Convert a ``T:"t"`` message into a :class:`Trade` (side from ``tks``, else unknown)."""
    msg = _check(msg, "t", "trade")
    price = decimal_text(_req(msg, "p", "trade"), "trade price")
    if Decimal(price) <= 0:
        raise DecodeError(f"trade price must be positive: {price!r}")
    taker = msg.get("tks")
    return Trade(
        venue="alpaca",
        symbol=_symbol(msg, "trade"),
        trade_id=_int_text(_req(msg, "i", "trade"), "trade id"),
        price=price,
        qty=decimal_text(_req(msg, "s", "trade"), "trade size"),
        side="buy" if taker == "B" else "sell" if taker == "S" else "unknown",
        ts_event=parse_time(_req(msg, "t", "trade"), "trade time"),
        ts_recv=ts_recv,
        src=src,
    )


def parse_quote(msg: Any, *, ts_recv: int) -> Quote:
    """Convert a ``T:"q"`` message into a :class:`Quote` (``update_id`` empty)."""
    msg = _check(msg, "q", "quote")
    return Quote(
        venue="alpaca",
        symbol=_symbol(msg, "quote"),
        bid_price=decimal_text(_req(msg, "bp", "quote"), "bid price"),
        bid_qty=decimal_text(_req(msg, "bs", "quote"), "bid size"),
        ask_price=decimal_text(_req(msg, "ap", "quote"), "ask price"),
        ask_qty=decimal_text(_req(msg, "as", "quote"), "ask size"),
        update_id="",
        ts_event=parse_time(_req(msg, "t", "quote"), "quote time"),
        ts_recv=ts_recv,
    )


def parse_bar(msg: Any, *, revision: int = 0) -> Bar:
    """Convert a ``b``/``u`` (interval ``1m``) or ``d`` (``1d``) message into a final :class:`Bar`.

    ``ts_open`` and ``ts_event`` are the bar start ``t``; ``trades`` is ``n`` (0 when absent).
    """
    if not isinstance(msg, Mapping) or msg.get("T") not in BAR_INTERVAL:
        raise DecodeError("not a bar message")
    count = msg.get("n", 0)
    if isinstance(count, str) and count.isascii() and count.isdigit() and len(count) <= 18:
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise DecodeError(f"bar trade count must be a non-negative integer: {count!r}")
    ts_open = parse_time(_req(msg, "t", "bar"), "bar time")
    return Bar(
        venue="alpaca",
        symbol=_symbol(msg, "bar"),
        interval=BAR_INTERVAL[msg["T"]],
        ts_open=ts_open,
        open=decimal_text(_req(msg, "o", "bar"), "bar open"),
        high=decimal_text(_req(msg, "h", "bar"), "bar high"),
        low=decimal_text(_req(msg, "l", "bar"), "bar low"),
        close=decimal_text(_req(msg, "c", "bar"), "bar close"),
        volume=decimal_text(_req(msg, "v", "bar"), "bar volume"),
        trades=count,
        first_trade_id="",
        last_trade_id="",
        final=True,
        revision=revision,
        ts_event=ts_open,
    )


def map_status(status: str) -> str:
    """Map an Alpaca order status to the trader's (Binance-style) status enum."""
    return _STATUS.get(status, status.upper())


def _text(value: Any, default: str = "") -> str:
    if value is None or value == "":
        return default
    return str(value)


def _order_symbol(order: Mapping[str, Any]) -> str:
    """Return the order's symbol; crypto pairs as ``BASE/QUOTE`` (``SOLUSD`` -> ``SOL/USD``)."""
    symbol = _text(order.get("symbol"))
    if not symbol:
        raise DecodeError("trade update order has no symbol")
    if order.get("asset_class") == "crypto" and "/" not in symbol:
        for quote in _CRYPTO_QUOTES:
            if symbol.endswith(quote) and len(symbol) > len(quote):
                return f"{symbol[: -len(quote)]}/{quote}"
    return symbol


def trade_update_key(data: Mapping[str, Any]) -> str:
    """Return the identity of a trade update: its execution id, else order id, event and time."""
    execution = data.get("execution_id")
    if execution:
        return str(execution)
    order = data.get("order")
    order_id = order.get("id", "") if isinstance(order, Mapping) else ""
    return f"{order_id}|{data.get('event', '')}|{data.get('timestamp', '')}"


def parse_trade_update(data: Any, *, ts_recv: int) -> OrderUpdate:
    """Convert a ``trade_updates`` event's ``data`` into an :class:`OrderUpdate`."""
    if not isinstance(data, Mapping):
        raise DecodeError("trade update data must be an object")
    event = _req(data, "event", "trade update")
    order = _req(data, "order", "trade update")
    if not isinstance(event, str) or not event or not isinstance(order, Mapping):
        raise DecodeError("trade update needs an event name and an order object")
    status = _text(order.get("status"), event)
    filled_qty = decimal_text(_text(order.get("filled_qty"), "0"), "filled qty")
    avg = order.get("filled_avg_price")
    cum_quote = "0"
    if avg not in (None, ""):
        product = Decimal(filled_qty) * Decimal(decimal_text(_text(avg), "filled avg price"))
        cum_quote = format(product, "f")
    stamp = data.get("timestamp") or order.get("updated_at")
    order_type = order.get("type") or order.get("order_type")
    return OrderUpdate(
        venue="alpaca",
        symbol=_order_symbol(order),
        client_order_id=_text(_req(order, "client_order_id", "trade update order")),
        order_id=_text(_req(order, "id", "trade update order")),
        side=_text(order.get("side")).lower(),
        order_type=_text(order_type).upper(),
        status=map_status(status),
        exec_type=_EXEC_TYPE.get(event, event.upper()),
        qty=decimal_text(_text(order.get("qty"), "0"), "order qty"),
        price=decimal_text(_text(order.get("limit_price"), "0"), "limit price"),
        filled_qty=filled_qty,
        last_qty=decimal_text(_text(data.get("qty"), "0"), "execution qty"),
        last_price=decimal_text(_text(data.get("price"), "0"), "execution price"),
        cum_quote=cum_quote,
        trade_id=_text(data.get("execution_id")),
        ts_event=parse_time(stamp, "trade update timestamp") if stamp else ts_recv,
        ts_recv=ts_recv,
    )
