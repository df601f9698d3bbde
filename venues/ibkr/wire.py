"""IBKR Client Portal message shapes -> common values (pure: no I/O, no clock).

Market data (``smd+<conid>`` topic, field ids of ``/iserver/marketdata/snapshot``): an update
holds only the fields that changed, as strings that may carry a prefix (``C`` = the prior
close, no trade yet today; ``H`` = halted) and sizes that may be formatted (``1,300``,
``1.2K``). The first update after a subscription may hold only ``conid`` and ``_updated``.
:func:`parse_smd` turns one update into a :class:`~common.messages.L1Update`; the symbol comes
from the frame's channel (``smd:<SYMBOL>``), which the ingestor sets from its own conid lookup,
since updates name only the conid.

Orders (``/iserver/account/orders`` entries and ``sor`` arguments): :func:`order_result` is the
Binance-shaped dict the trader records, :func:`order_update` the
:class:`~common.schema.OrderUpdate` of a ``sor`` entry. ``order_ref`` carries our ``cOID``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from tickpipe.common.decimals import finite_decimal
from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import L1Update
from tickpipe.common.schema import OrderUpdate

__all__ = [
    "ASK",
    "ASK_SIZE",
    "BID",
    "BID_SIZE",
    "LAST",
    "LAST_SIZE",
    "MARKET_FIELDS",
    "map_status",
    "order_result",
    "order_update",
    "parse_price",
    "parse_size",
    "parse_smd",
    "symbol_channel",
]

LAST, LAST_SIZE, BID, ASK, BID_SIZE, ASK_SIZE = "31", "7059", "84", "86", "88", "85"
#: The fields the ingestor subscribes: last, last size, bid, ask, bid size, ask size, symbol.
MARKET_FIELDS = (LAST, LAST_SIZE, BID, ASK, BID_SIZE, ASK_SIZE, "55")
_PREFIXES = "CH"
_STATUS = {
    "PendingSubmit": "NEW",
    "PreSubmitted": "NEW",
    "Submitted": "NEW",
    "ApiPending": "NEW",
    "Filled": "FILLED",
    "Cancelled": "CANCELED",
    "ApiCancelled": "CANCELED",
    "PendingCancel": "PENDING_CANCEL",
    "Inactive": "REJECTED",
}


def symbol_channel(symbol: str) -> str:
    """The raw-frame channel of a ``smd`` frame of ``symbol``."""
    return f"smd:{symbol}"


def _decimal(text: str, what: str) -> Decimal:
    value = finite_decimal(text)
    if value is None:
        raise DecodeError(f"{what} is not a number: {text!r}")
    if value < 0:
        raise DecodeError(f"{what} must be a finite non-negative number: {text!r}")
    return value


def parse_price(value: Any, what: str = "price") -> tuple[str, str]:
    """Return ``(decimal text, prefix)`` of a price field (prefix ``""``, ``C`` or ``H``)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(f"{what} must be a string or number: {value!r}")
    text = str(value).strip().replace(",", "")
    prefix = ""
    if text[:1] in _PREFIXES:
        prefix, text = text[0], text[1:]
    return f"{_decimal(text, what):f}", prefix


def parse_size(value: Any, what: str = "size") -> str:
    """Return a size field as decimal text (``1,300`` -> 1300, ``1.2K`` -> 1200)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DecodeError(f"{what} must be a string or number: {value!r}")
    text = str(value).strip().replace(",", "")
    scale = {"K": Decimal(1000), "M": Decimal(1_000_000)}.get(text[-1:].upper())
    if scale is not None:
        return f"{(_decimal(text[:-1], what) * scale).normalize():f}"
    return f"{_decimal(text, what).normalize():f}"


def parse_smd(message: Mapping[str, Any], symbol: str, ts_recv: int) -> L1Update | None:
    """Return the level-1 update of one ``smd`` message (``None``: no field we read changed).

    A last price with the ``C`` prefix is the prior close, not a trade: it is not reported as
    a last price.
    """
    updated = message.get("_updated")
    if isinstance(updated, bool) or not isinstance(updated, int) or updated <= 0:
        raise DecodeError(f"_updated must be epoch milliseconds: {updated!r}")
    last = last_size = bid = ask = bid_size = ask_size = None
    if LAST in message:
        text, prefix = parse_price(message[LAST], "last price (31)")
        last = None if prefix == "C" else text
    if LAST_SIZE in message:
        last_size = parse_size(message[LAST_SIZE], "last size (7059)")
    if BID in message:
        bid = parse_price(message[BID], "bid (84)")[0]
    if ASK in message:
        ask = parse_price(message[ASK], "ask (86)")[0]
    if BID_SIZE in message:
        bid_size = parse_size(message[BID_SIZE], "bid size (88)")
    if ASK_SIZE in message:
        ask_size = parse_size(message[ASK_SIZE], "ask size (85)")
    if all(v is None for v in (last, last_size, bid, ask, bid_size, ask_size)):
        return None
    return L1Update(symbol, updated, last, last_size, bid, bid_size, ask, ask_size, ts_recv)


def map_status(status: str, filled: Decimal) -> str:
    """Map an IBKR order status to the Binance-style status the trader's state machine uses."""
    mapped = _STATUS.get(status, status.upper())
    if mapped == "NEW" and filled > 0:
        return "PARTIALLY_FILLED"
    return mapped


def _number(value: Any) -> Decimal:
    if value is None or value == "" or isinstance(value, bool):
        return Decimal(0)
    return finite_decimal(str(value).replace(",", "")) or Decimal(0)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


#: The gateway's order type names (``orderType`` and ``origOrderType``) -> the intent's.
_ORDER_TYPES = {"MKT": "MARKET", "LMT": "LIMIT", "STP": "STOP", "STOP LIMIT": "STOP_LIMIT"}


def order_result(order: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one IBKR order entry into the Binance-shaped order dict the ledger records."""
    filled = _number(order.get("filledQuantity"))
    remaining = _number(order.get("remainingQuantity"))
    total = _number(order.get("totalSize")) or filled + remaining
    average = _number(order.get("avgPrice"))
    kind = _text(order.get("origOrderType") or order.get("orderType")).upper()
    return {
        "symbol": _text(order.get("ticker")),
        "clientOrderId": _text(order.get("order_ref")),
        "orderId": _text(order.get("orderId")),
        "status": map_status(_text(order.get("status")), filled),
        "origQty": f"{total.normalize():f}",
        "executedQty": f"{filled.normalize():f}",
        "cummulativeQuoteQty": f"{(filled * average).normalize():f}",
        "price": _text(order.get("price") or "0"),
        "side": _text(order.get("side")).upper(),
        "type": _ORDER_TYPES.get(kind, kind),
        "updateTime": int(_number(order.get("lastExecutionTime_r"))),
    }


def order_update(order: Mapping[str, Any], ts_recv: int) -> OrderUpdate:
    """Return the order update of one ``sor`` entry (cumulative fill, no per-fill figures)."""
    result = order_result(order)
    if not result["orderId"]:
        raise DecodeError("sor entry has no orderId")
    return OrderUpdate(
        venue="ibkr",
        symbol=result["symbol"],
        client_order_id=result["clientOrderId"],
        order_id=result["orderId"],
        side=result["side"],
        order_type=result["type"],
        status=result["status"],
        exec_type=_text(order.get("status")),
        qty=result["origQty"],
        price=result["price"],
        filled_qty=result["executedQty"],
        last_qty="",
        last_price="",
        cum_quote=result["cummulativeQuoteQty"],
        trade_id="",
        ts_event=result["updateTime"] * 1_000_000,
        ts_recv=ts_recv,
    )
