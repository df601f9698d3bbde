"""Check a Binance Spot order request against its parameters and symbol filters (pure).

The filters are those ``exchangeInfo`` lists for the symbol (:func:`symbol_filters`, values of
BTCUSDT on the venue) and each refusal carries the venue's code and message (Spot API,
"Filters" and "Error codes"): ``-1013 Filter failure: <FILTER>`` for PRICE_FILTER, LOT_SIZE,
MARKET_LOT_SIZE, PERCENT_PRICE_BY_SIDE, NOTIONAL and MAX_NUM_ORDERS; ``-1106`` for a parameter
the order type does not take, ``-1102`` for a missing one, ``-1116`` for an unknown type.
The mock measures PERCENT_PRICE_BY_SIDE and a MARKET order's NOTIONAL against the last traded
price where the venue uses the ``avgPriceMins`` average.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from tickpipe.mock_ws.order_model import OrderRejected

__all__ = [
    "MAX_NUM_ALGO_ORDERS",
    "MAX_NUM_ORDERS",
    "MIN_NOTIONAL",
    "ORDER_TYPES",
    "QTY_STEP",
    "STOP_TYPES",
    "OrderSpec",
    "check_notional",
    "check_percent_price",
    "decimal_param",
    "int_param",
    "mandatory",
    "market_qty",
    "parse_order",
    "symbol_filters",
    "symbol_param",
]

QTY_STEP = Decimal("0.00001")
PRICE_TICK = Decimal("0.01")
MAX_QTY = Decimal("9000")
MAX_PRICE = Decimal("1000000")
MARKET_MAX_QTY = Decimal("1000")
MIN_NOTIONAL = Decimal("5")
MAX_NOTIONAL = Decimal("9000000")
MULTIPLIER_UP, MULTIPLIER_DOWN = Decimal("5"), Decimal("0.2")
MAX_NUM_ORDERS = 200
MAX_NUM_ALGO_ORDERS = 5
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
#: The order types ``exchangeInfo`` lists, in the venue's order.
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", *STOP_TYPES]
_LIMIT_PRICED = {"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"}
_TIF_TYPES = {"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"}
_TIFS = ("GTC", "IOC", "FOK")
_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def symbol_filters() -> list[dict[str, Any]]:
    """Return the ``filters`` of a symbol in ``exchangeInfo`` (the ones the mock enforces)."""
    return [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "1000000.00000000",
            "tickSize": "0.01000000",
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": "0.00001000",
            "maxQty": "9000.00000000",
            "stepSize": "0.00001000",
        },
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "1000.00000000",
            "stepSize": "0.00000000",
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "5",
            "bidMultiplierDown": "0.2",
            "askMultiplierUp": "5",
            "askMultiplierDown": "0.2",
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": MAX_NUM_ORDERS},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": MAX_NUM_ALGO_ORDERS},
    ]


@dataclass(frozen=True)
class OrderSpec:
    """An order request that passed the parameter and price/quantity checks."""

    symbol: str
    side: str
    type: str
    qty: Decimal | None  # None: a MARKET order by quoteOrderQty
    quote_qty: Decimal
    price: Decimal
    stop_price: Decimal
    time_in_force: str
    client_order_id: str


def mandatory(name: str) -> OrderRejected:
    """The venue's -1102: parameter ``name`` is missing, empty or malformed."""
    return OrderRejected(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def symbol_param(params: Mapping[str, Any], listed: Container[str]) -> str:
    """Read the mandatory ``symbol`` (upper-cased): -1102 when missing, -1121 when not listed."""
    symbol = str(params.get("symbol") or "").upper()
    if not symbol:
        raise mandatory("symbol")
    if symbol not in listed:
        raise OrderRejected(-1121, "Invalid symbol.")
    return symbol


def int_param(
    params: Mapping[str, Any], name: str, default: int | None, low: int, high: int
) -> int | None:
    """Parse an integer parameter in ``low..high`` (-1100 otherwise); ``default`` if absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise OrderRejected(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        ) from None
    if not low <= value <= high:
        raise OrderRejected(-1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _filter(name: str) -> OrderRejected:
    return OrderRejected(-1013, f"Filter failure: {name}")


def _given(params: Mapping[str, Any], name: str) -> bool:
    return params.get(name) not in (None, "")


def _not_required(name: str) -> OrderRejected:
    return OrderRejected(-1106, f"Parameter '{name}' sent when not required.")


def decimal_param(raw: Any, name: str) -> Decimal:
    """Parse a decimal parameter as the venue does (-1102 missing, -1100 malformed)."""
    if raw is None or raw == "":
        raise mandatory(name)
    text = raw if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else str(raw)
    if isinstance(raw, bool) or not _DECIMAL_RE.match(text):
        raise OrderRejected(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise mandatory(name) from None


def _check_price(price: Decimal) -> None:
    if price < PRICE_TICK or price > MAX_PRICE or price % PRICE_TICK != 0:
        raise _filter("PRICE_FILTER")


def _check_qty(qty: Decimal, market: bool) -> None:
    if qty < QTY_STEP or qty > MAX_QTY or qty % QTY_STEP != 0:
        raise _filter("LOT_SIZE")
    if market and qty > MARKET_MAX_QTY:
        raise _filter("MARKET_LOT_SIZE")


def _price_param(params: Mapping[str, Any], name: str, needed: bool) -> Decimal:
    """Parse a price the order type needs (PRICE_FILTER); refuse one it does not take."""
    if needed:
        value = decimal_param(params.get(name), name)
        _check_price(value)
        return value
    if _given(params, name):
        raise _not_required(name)
    return Decimal(0)


def parse_order(params: Mapping[str, Any], listed: tuple[str, ...]) -> OrderSpec:
    """Check an order's parameters, types and PRICE_FILTER/LOT_SIZE; return what it asks."""
    symbol = symbol_param(params, listed)
    side = str(params.get("side") or "").upper()
    if not side:
        raise mandatory("side")
    if side not in {"BUY", "SELL"}:
        raise OrderRejected(-1117, "Invalid side.")
    order_type = str(params.get("type") or "").upper()
    if not order_type:
        raise mandatory("type")
    if order_type not in ORDER_TYPES:
        raise OrderRejected(-1116, "Invalid orderType.")
    market = order_type == "MARKET"
    qty: Decimal | None = None
    quote_qty = Decimal(0)
    if market and _given(params, "quoteOrderQty"):
        if _given(params, "quantity"):
            raise _not_required("quoteOrderQty")
        quote_qty = decimal_param(params.get("quoteOrderQty"), "quoteOrderQty")
        if quote_qty <= 0:
            raise _filter("NOTIONAL")
    elif market and not _given(params, "quantity"):
        raise OrderRejected(
            -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
        )
    else:
        if _given(params, "quoteOrderQty"):
            raise _not_required("quoteOrderQty")
        qty = decimal_param(params.get("quantity"), "quantity")
        _check_qty(qty, market)
    price = _price_param(params, "price", order_type in _LIMIT_PRICED)
    stop_price = _price_param(params, "stopPrice", order_type in STOP_TYPES)
    tif = "GTC"
    if order_type in _TIF_TYPES:
        tif = str(params.get("timeInForce") or "").upper()
        if not tif:
            raise mandatory("timeInForce")
        if tif not in _TIFS:
            raise OrderRejected(-1115, "Invalid timeInForce.")
    elif _given(params, "timeInForce"):
        raise _not_required("timeInForce")
    client_id = str(params.get("newClientOrderId") or "")
    if client_id and not _CLIENT_ID_RE.match(client_id):
        raise OrderRejected(
            -1100,
            "Illegal characters found in parameter 'newClientOrderId'; "
            "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
        )
    return OrderSpec(symbol, side, order_type, qty, quote_qty, price, stop_price, tif, client_id)


def market_qty(quote_qty: Decimal, price: Decimal) -> Decimal:
    """Return the base quantity ``quote_qty`` buys at ``price``, down to the LOT_SIZE step."""
    qty = (quote_qty / price).quantize(QTY_STEP, rounding=ROUND_DOWN)
    _check_qty(qty, market=True)
    return qty


def check_notional(qty: Decimal, price: Decimal, market: bool) -> None:
    """Apply NOTIONAL: at least 5 (MARKET too: applyMinToMarket), at most 9,000,000 (not MARKET)."""
    notional = qty * price
    if notional < MIN_NOTIONAL or (not market and notional > MAX_NOTIONAL):
        raise _filter("NOTIONAL")


def check_percent_price(side: str, price: Decimal, reference: Decimal) -> None:
    """Apply PERCENT_PRICE_BY_SIDE: a priced order within 0.2x..5x the reference price."""
    if not reference * MULTIPLIER_DOWN <= price <= reference * MULTIPLIER_UP:
        raise _filter("PERCENT_PRICE_BY_SIDE")
