"""Match orders against the simulated market and build Binance's order payloads (pure, no I/O).

Scope: MARKET orders (BUY/SELL by ``quantity``) fill fully at the symbol's current price. Each
accepted order yields an ``executionReport`` x=NEW X=NEW, then x=TRADE X=FILLED, then an
``outboundAccountPosition`` for the changed assets, and the ``order.place`` result in the ACK,
RESULT or FULL shape. The fill is also booked as a public trade in the market, so the
executionReport's ``t`` is a trade id that appears on ``<symbol>@trade``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from mock_ws.market import MarketSim

__all__ = [
    "QTY_STEP",
    "Fill",
    "MatchingEngine",
    "Order",
    "OrderRejected",
    "PlaceOutcome",
    "split_symbol",
]

NS_PER_MS = 1_000_000
QTY_STEP = Decimal("0.00001")
MAX_QTY = Decimal("9000")
EIGHT = Decimal("0.00000001")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD")
_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_OPEN = {"NEW", "PARTIALLY_FILLED"}
_KNOWN_TYPES = {"LIMIT", "MARKET", "LIMIT_MAKER"} | {
    f"{kind}{suffix}" for kind in ("STOP_LOSS", "TAKE_PROFIT") for suffix in ("", "_LIMIT")
}


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split ``BTCUSDT`` into ``("BTC", "USDT")`` by its quote-asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


def _d8(value: Decimal) -> str:
    return f"{value.quantize(EIGHT):f}"


class OrderRejected(Exception):
    """The venue refuses the request: Binance ``code``/``msg`` and the HTTP-like ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def _mandatory(name: str) -> OrderRejected:
    return OrderRejected(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


@dataclass(frozen=True)
class Fill:
    """One execution of an order."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int


@dataclass
class Order:
    """An order as the venue keeps it."""

    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    orig_qty: Decimal
    time_ms: int
    status: str = "NEW"
    executed_qty: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time_ms: int = 0
    fills: list[Fill] = field(default_factory=list)

    def query_result(self) -> dict[str, Any]:
        """Return the ``order.status`` result shape."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": "0.00000000",
            "origQty": _d8(self.orig_qty),
            "executedQty": _d8(self.executed_qty),
            "origQuoteOrderQty": "0.00000000",
            "cummulativeQuoteQty": _d8(self.cum_quote),
            "status": self.status,
            "timeInForce": "GTC",
            "type": self.type,
            "side": self.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time_ms,
            "updateTime": self.update_time_ms or self.time_ms,
            "isWorking": True,
            "workingTime": self.time_ms,
            "selfTradePreventionMode": "NONE",
        }

    def place_result(self, resp_type: str) -> dict[str, Any]:
        """Return the ``order.place`` result in the ACK, RESULT or FULL shape."""
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": self.update_time_ms or self.time_ms,
        }
        if resp_type == "ACK":
            return out
        out.update(
            price="0.00000000",
            origQty=_d8(self.orig_qty),
            executedQty=_d8(self.executed_qty),
            origQuoteOrderQty="0.00000000",
            cummulativeQuoteQty=_d8(self.cum_quote),
            status=self.status,
            timeInForce="GTC",
            type=self.type,
            side=self.side,
            workingTime=self.time_ms,
            selfTradePreventionMode="NONE",
        )
        if resp_type == "FULL":
            out["fills"] = [
                {
                    "price": _d8(f.price),
                    "qty": _d8(f.qty),
                    "commission": _d8(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in self.fills
            ]
        return out


@dataclass(frozen=True)
class PlaceOutcome:
    """What one accepted order produced: the order, its place result and user-data events."""

    order: Order
    result: dict[str, Any]
    events: list[dict[str, Any]]


class MatchingEngine:
    """Accept orders for one account and fill MARKET orders at the market's current price."""

    def __init__(
        self,
        market: MarketSim,
        *,
        balances: Mapping[str, str] | None = None,
        commission_rate: str = "0.001",
    ) -> None:
        self.market = market
        self.commission_rate = Decimal(commission_rate)
        self.balances: dict[str, Decimal] = {}
        for symbol in market.symbols:
            base, quote = split_symbol(symbol)
            self.balances.setdefault(base, Decimal(100))
            self.balances.setdefault(quote, Decimal(1_000_000))
        for asset, amount in (balances or {}).items():
            self.balances[asset] = Decimal(amount)
        self._by_id: dict[int, Order] = {}
        self._by_client_id: dict[str, Order] = {}
        self._next_order_id = 1
        self._next_execution_id = 1
        self._auto_ids = 0

    @property
    def orders(self) -> list[Order]:
        return list(self._by_id.values())

    def place(self, params: Mapping[str, Any], now_ns: int) -> PlaceOutcome:
        """Validate, accept and execute an order; raise :class:`OrderRejected` if refused."""
        order = self.accept(params, now_ns)
        new_report = self.execution_report(order, "NEW", now_ns)
        events = [new_report, *self.execute(order, now_ns)]
        resp_type = str(params.get("newOrderRespType") or "FULL").upper()
        if resp_type not in {"ACK", "RESULT", "FULL"}:
            resp_type = "FULL"
        return PlaceOutcome(order=order, result=order.place_result(resp_type), events=events)

    def accept(self, params: Mapping[str, Any], now_ns: int) -> Order:
        """Validate an order and register it as NEW (open) without executing it."""
        symbol = str(params.get("symbol") or "").upper()
        if not symbol:
            raise _mandatory("symbol")
        if not self.market.has_symbol(symbol):
            raise OrderRejected(-1121, "Invalid symbol.")
        side = str(params.get("side") or "").upper()
        if not side:
            raise _mandatory("side")
        if side not in {"BUY", "SELL"}:
            raise OrderRejected(-1117, "Invalid side.")
        order_type = str(params.get("type") or "").upper()
        if not order_type:
            raise _mandatory("type")
        if order_type not in _KNOWN_TYPES:
            raise OrderRejected(-1116, "Invalid orderType.")
        if order_type != "MARKET":
            raise OrderRejected(
                -1116, f"Invalid orderType: the mock accepts MARKET, not {order_type}."
            )
        qty = self._quantity(params.get("quantity"))
        client_id = str(params.get("newClientOrderId") or "")
        if client_id:
            if not _CLIENT_ID_RE.match(client_id):
                raise OrderRejected(
                    -1100,
                    "Illegal characters found in parameter 'newClientOrderId'; "
                    "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
                )
            previous = self._by_client_id.get(client_id)
            if previous is not None and previous.status in _OPEN:
                raise OrderRejected(-2010, "Duplicate order sent.")
        else:
            self._auto_ids += 1
            client_id = f"mock{self._auto_ids:018d}"
        base, quote = split_symbol(symbol)
        price = Decimal(self.market.last_price(symbol))
        if side == "BUY" and self.balances.get(quote, Decimal(0)) < qty * price:
            raise OrderRejected(-2010, "Account has insufficient balance for requested action.")
        if side == "SELL" and self.balances.get(base, Decimal(0)) < qty:
            raise OrderRejected(-2010, "Account has insufficient balance for requested action.")
        now_ms = now_ns // NS_PER_MS
        order = Order(
            symbol=symbol,
            order_id=self._next_order_id,
            client_order_id=client_id,
            side=side,
            type=order_type,
            orig_qty=qty,
            time_ms=now_ms,
            update_time_ms=now_ms,
        )
        self._next_order_id += 1
        self._by_id[order.order_id] = order
        self._by_client_id[client_id] = order
        return order

    def execute(self, order: Order, now_ns: int) -> list[dict[str, Any]]:
        """Fill an open MARKET order fully; return its TRADE report and the account update."""
        base, quote = split_symbol(order.symbol)
        remaining = order.orig_qty - order.executed_qty
        # The taker buys from resting asks (seller is maker) or sells into bids (buyer is maker).
        trade = self.market.record_fill(
            order.symbol, f"{remaining:f}", order.side == "SELL", now_ns
        )
        price = Decimal(trade.price)
        quote_qty = (price * remaining).quantize(EIGHT)
        if order.side == "BUY":
            commission = (remaining * self.commission_rate).quantize(EIGHT)
            commission_asset = base
            self._credit(base, remaining - commission)
            self._credit(quote, -quote_qty)
        else:
            commission = (quote_qty * self.commission_rate).quantize(EIGHT)
            commission_asset = quote
            self._credit(base, -remaining)
            self._credit(quote, quote_qty - commission)
        fill = Fill(price, remaining, commission, commission_asset, trade.trade_id)
        order.fills.append(fill)
        order.executed_qty += remaining
        order.cum_quote += quote_qty
        order.status = "FILLED"
        order.update_time_ms = now_ns // NS_PER_MS
        report = self.execution_report(order, "TRADE", now_ns, fill=fill)
        return [report, self.account_position([base, quote], now_ns)]

    def find(self, *, order_id: Any = None, client_order_id: Any = None) -> Order:
        """Look an order up by ``orderId`` or ``origClientOrderId``; -2013 when absent."""
        order: Order | None = None
        if order_id not in (None, ""):
            try:
                order = self._by_id.get(int(order_id))
            except (TypeError, ValueError):
                raise OrderRejected(
                    -1100, "Illegal characters found in parameter 'orderId'."
                ) from None
            if order is not None and client_order_id and order.client_order_id != client_order_id:
                order = None
        elif client_order_id:
            order = self._by_client_id.get(str(client_order_id))
        else:
            raise OrderRejected(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order is None:
            raise OrderRejected(-2013, "Order does not exist.")
        return order

    def execution_report(
        self, order: Order, exec_type: str, now_ns: int, *, fill: Fill | None = None
    ) -> dict[str, Any]:
        """Build an ``executionReport`` event with every field of the venue's payload."""
        now_ms = now_ns // NS_PER_MS
        execution_id = self._next_execution_id
        self._next_execution_id += 1
        status = "NEW" if exec_type == "NEW" else order.status
        last_qty = fill.qty if fill else Decimal(0)
        last_price = fill.price if fill else Decimal(0)
        return {
            "e": "executionReport",
            "E": now_ms,
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": "GTC",
            "q": _d8(order.orig_qty),
            "p": "0.00000000",
            "P": "0.00000000",
            "F": "0.00000000",
            "g": -1,
            "C": "",
            "x": exec_type,
            "X": status,
            "r": "NONE",
            "i": order.order_id,
            "l": _d8(last_qty),
            "z": _d8(order.executed_qty if fill else Decimal(0)),
            "L": _d8(last_price),
            "n": _d8(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": now_ms,
            "t": fill.trade_id if fill else -1,
            "I": execution_id,
            "w": fill is None,
            "m": False,
            "M": fill is not None,
            "O": order.time_ms,
            "Z": _d8(order.cum_quote if fill else Decimal(0)),
            "Y": _d8((last_price * last_qty).quantize(EIGHT)),
            "Q": "0.00000000",
            "W": order.time_ms,
            "V": "NONE",
        }

    def account_position(self, assets: list[str], now_ns: int) -> dict[str, Any]:
        """Build an ``outboundAccountPosition`` event for ``assets``."""
        now_ms = now_ns // NS_PER_MS
        return {
            "e": "outboundAccountPosition",
            "E": now_ms,
            "u": now_ms,
            "B": [
                {"a": a, "f": _d8(self.balances.get(a, Decimal(0))), "l": "0.00000000"}
                for a in assets
            ],
        }

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

    def _quantity(self, raw: Any) -> Decimal:
        if raw is None or raw == "":
            raise _mandatory("quantity")
        text = raw if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else str(raw)
        if isinstance(raw, bool) or not _DECIMAL_RE.match(text):
            raise OrderRejected(
                -1100,
                "Illegal characters found in parameter 'quantity'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        try:
            qty = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the regex admits only decimals
            raise _mandatory("quantity") from None
        if qty < QTY_STEP or qty > MAX_QTY or qty % QTY_STEP != 0:
            raise OrderRejected(-1013, "Filter failure: LOT_SIZE")
        return qty
