"""Match orders against the simulated books and market (pure, no I/O).

MARKET orders fill fully at the symbol's current price. LIMIT orders (``timeInForce`` GTC, IOC,
FOK) take the levels of the symbol's :class:`~mock_ws.book.SimBook` they cross (partial fills,
one public trade per level); the rest of a GTC order rests, IOC expires, and a FOK that cannot
fill completely expires untouched. A resting order fills as a maker once the market trades at
or through its price (:meth:`MatchingEngine.on_market_trade`). Each order yields
``executionReport`` events (NEW, TRADE, CANCELED, EXPIRED) and an ``outboundAccountPosition``
for the changed assets; funds of resting orders are locked. Every fill is booked as a public
trade in the market, so an executionReport's ``t`` appears on ``<symbol>@trade``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tickpipe.mock_ws.book import SimBook
from tickpipe.mock_ws.market import QTY_UNITS, TICKS_PER_UNIT, MarketSim, SimTrade
from tickpipe.mock_ws.order_model import (
    EIGHT,
    Fill,
    Order,
    OrderRejected,
    account_position,
    account_result,
    execution_report,
)

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
PRICE_TICK = Decimal("0.01")
MAX_QTY = Decimal("9000")
MAX_PRICE = Decimal("1000000")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD")
_CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_KNOWN_TYPES = {"LIMIT", "MARKET", "LIMIT_MAKER"} | {
    f"{kind}{suffix}" for kind in ("STOP_LOSS", "TAKE_PROFIT") for suffix in ("", "_LIMIT")
}
_TIFS = ("GTC", "IOC", "FOK")
Event = dict[str, Any]


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split ``BTCUSDT`` into ``("BTC", "USDT")`` by its quote-asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


def _mandatory(name: str) -> OrderRejected:
    return OrderRejected(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _decimal(raw: Any, name: str) -> Decimal:
    if raw is None or raw == "":
        raise _mandatory(name)
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
        raise _mandatory(name) from None


@dataclass(frozen=True)
class PlaceOutcome:
    """What one accepted order produced: the order, its place result and user-data events."""

    order: Order
    result: dict[str, Any]
    events: list[Event]


class MatchingEngine:
    """Keep one account's orders and balances and match them; see the module docstring."""

    def __init__(
        self,
        market: MarketSim,
        *,
        balances: Mapping[str, str] | None = None,
        commission_rate: str = "0.001",
        books: Mapping[str, SimBook] | None = None,
    ) -> None:
        self.market = market
        self.books: Mapping[str, SimBook] = books or {}
        self.commission_rate = Decimal(commission_rate)
        self.balances: dict[str, Decimal] = {}
        self.locked: dict[str, Decimal] = {}
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
        self._own_trades: set[tuple[str, int]] = set()
        self._pending: list[Event] = []

    @property
    def orders(self) -> list[Order]:
        return list(self._by_id.values())

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Return the open orders, of one symbol or all, oldest first."""
        return [o for o in self._by_id.values() if o.is_open and symbol in (None, o.symbol)]

    def place(self, params: Mapping[str, Any], now_ns: int) -> PlaceOutcome:
        """Validate, accept and execute an order; raise :class:`OrderRejected` if refused."""
        order = self.accept(params, now_ns)
        events = [self._report(order, "NEW", now_ns), *self.execute(order, now_ns)]
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
        if order_type not in ("MARKET", "LIMIT"):
            raise OrderRejected(
                -1116, f"Invalid orderType: the mock accepts MARKET and LIMIT, not {order_type}."
            )
        qty = self._quantity(params.get("quantity"))
        price, tif = Decimal(0), "GTC"
        if order_type == "LIMIT":
            price = _decimal(params.get("price"), "price")
            if price <= 0 or price > MAX_PRICE or price % PRICE_TICK != 0:
                raise OrderRejected(-1013, "Filter failure: PRICE_FILTER")
            tif = str(params.get("timeInForce") or "").upper()
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in _TIFS:
                raise OrderRejected(-1115, "Invalid timeInForce.")
        client_id = str(params.get("newClientOrderId") or "")
        if client_id:
            if not _CLIENT_ID_RE.match(client_id):
                raise OrderRejected(
                    -1100,
                    "Illegal characters found in parameter 'newClientOrderId'; "
                    "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
                )
            previous = self._by_client_id.get(client_id)
            if previous is not None and previous.is_open:
                raise OrderRejected(-2010, "Duplicate order sent.")
        else:
            self._auto_ids += 1
            client_id = f"mock{self._auto_ids:018d}"
        base, quote = split_symbol(symbol)
        cost_price = price if order_type == "LIMIT" else Decimal(self.market.last_price(symbol))
        if side == "BUY" and self.balances.get(quote, Decimal(0)) < qty * cost_price:
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
            price=price,
            time_in_force=tif,
        )
        if order_type == "LIMIT":
            self._lock(order, qty)
        self._next_order_id += 1
        self._by_id[order.order_id] = order
        self._by_client_id[client_id] = order
        return order

    def execute(self, order: Order, now_ns: int) -> list[Event]:
        """Execute a just-accepted order as a taker; return its reports and account update."""
        if order.type == "MARKET":
            price = Decimal(self.market.last_price(order.symbol))
            self._fill(order, price, order.remaining, now_ns, maker=False)
        else:
            fillable = sum(q for _, q in self._crossing(order, dry_run=True))
            if order.time_in_force != "FOK" or fillable >= order.remaining:
                for price, qty in self._crossing(order, dry_run=False):
                    self._fill(order, price, qty, now_ns, maker=False)
            if order.remaining > 0 and order.time_in_force != "GTC":
                self._close(order, "EXPIRED", now_ns)
        return self._flush(order, now_ns, force=order.type == "LIMIT")

    def cancel(self, params: Mapping[str, Any], now_ns: int) -> tuple[dict[str, Any], list[Event]]:
        """Cancel an open order; return the cancel result and events (-2011 if not open)."""
        symbol = str(params.get("symbol") or "").upper()
        if not symbol:
            raise _mandatory("symbol")
        if not self.market.has_symbol(symbol):
            raise OrderRejected(-1121, "Invalid symbol.")
        try:
            order = self.find(
                order_id=params.get("orderId"), client_order_id=params.get("origClientOrderId")
            )
        except OrderRejected as exc:
            if exc.code == -2013:
                raise OrderRejected(-2011, "Unknown order sent.") from None
            raise
        if order.symbol != symbol or not order.is_open:
            raise OrderRejected(-2011, "Unknown order sent.")
        self._auto_ids += 1
        order.cancel_client_id = str(params.get("newClientOrderId") or f"cxl{self._auto_ids:018d}")
        self._close(order, "CANCELED", now_ns)
        return order.cancel_result(order.cancel_client_id), self._flush(order, now_ns)

    def on_market_trade(self, trade: SimTrade, now_ns: int) -> list[Event]:
        """Fill resting orders the market traded at or through; return their events."""
        key = (trade.symbol, trade.trade_id)
        if key in self._own_trades:
            self._own_trades.discard(key)
            return []
        events: list[Event] = []
        price = Decimal(trade.price)
        for order in self.open_orders(trade.symbol):
            if order.type != "LIMIT" or order.time_ms * NS_PER_MS > now_ns:
                continue
            if (order.side == "BUY" and price <= order.price) or (
                order.side == "SELL" and price >= order.price
            ):
                self._fill(order, order.price, order.remaining, now_ns, maker=True)
                events.extend(self._flush(order, now_ns))
        return events

    def adjust_balance(self, asset: str, delta: str, now_ns: int) -> list[Event]:
        """Deposit (or withdraw, negative) ``delta``; return balanceUpdate + account events."""
        amount = Decimal(delta)
        self._credit(asset, amount)
        now_ms = now_ns // NS_PER_MS
        update = {"e": "balanceUpdate", "E": now_ms, "a": asset, "d": f"{amount:f}", "T": now_ms}
        return [update, account_position(self.balances, self.locked, [asset], now_ns)]

    def account(self, now_ns: int) -> dict[str, Any]:
        """Return the ``account.status`` / ``GET /api/v3/account`` result."""
        return account_result(self.commission_rate, self.balances, self.locked, now_ns)

    # ---- internals ----------------------------------------------------------------------------

    def _crossing(self, order: Order, *, dry_run: bool) -> list[tuple[Decimal, Decimal]]:
        buy = order.side == "BUY"
        book = self.books.get(order.symbol)
        if book is None:  # no book: the current price with unlimited size
            last = Decimal(self.market.last_price(order.symbol))
            crosses = last <= order.price if buy else last >= order.price
            return [(last, order.remaining)] if crosses else []
        units = int(order.remaining * QTY_UNITS)
        limit = int(order.price * TICKS_PER_UNIT)
        fills = book.take(buy, limit, units, dry_run=dry_run)
        return [(Decimal(p) / TICKS_PER_UNIT, Decimal(q) / QTY_UNITS) for p, q in fills]

    def _lock(self, order: Order, qty: Decimal) -> None:
        base, quote = split_symbol(order.symbol)
        asset, amount = (quote, qty * order.price) if order.side == "BUY" else (base, qty)
        self._credit(asset, -amount)
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount

    def _unlock(self, order: Order, qty: Decimal) -> None:
        base, quote = split_symbol(order.symbol)
        asset, amount = (quote, qty * order.price) if order.side == "BUY" else (base, qty)
        self.locked[asset] = self.locked.get(asset, Decimal(0)) - amount
        self._credit(asset, amount)

    def _fill(
        self, order: Order, price: Decimal, qty: Decimal, now_ns: int, *, maker: bool
    ) -> None:
        base, quote = split_symbol(order.symbol)
        if order.type == "LIMIT":
            self._unlock(order, qty)
        # A buyer taker lifts asks (seller is maker); a maker buy order is the maker buyer.
        buyer_is_maker = (order.side == "BUY") == maker
        trade = self.market.record_fill(
            order.symbol, f"{qty:f}", buyer_is_maker, now_ns, price=f"{price:f}"
        )
        self._own_trades.add((trade.symbol, trade.trade_id))
        quote_qty = (price * qty).quantize(EIGHT)
        if order.side == "BUY":
            commission = (qty * self.commission_rate).quantize(EIGHT)
            commission_asset = base
            self._credit(base, qty - commission)
            self._credit(quote, -quote_qty)
        else:
            commission = (quote_qty * self.commission_rate).quantize(EIGHT)
            commission_asset = quote
            self._credit(base, -qty)
            self._credit(quote, quote_qty - commission)
        fill = Fill(price, qty, commission, commission_asset, trade.trade_id)
        order.fills.append(fill)
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        order.update_time_ms = now_ns // NS_PER_MS
        self._pending.append(self._report(order, "TRADE", now_ns, fill=fill, maker=maker))

    def _close(self, order: Order, status: str, now_ns: int) -> None:
        if order.type == "LIMIT" and order.remaining > 0:
            self._unlock(order, order.remaining)
        order.status = status
        order.update_time_ms = now_ns // NS_PER_MS
        self._pending.append(self._report(order, status, now_ns))

    def _flush(self, order: Order, now_ns: int, *, force: bool = False) -> list[Event]:
        events, self._pending = self._pending, []
        if events or force:
            base, quote = split_symbol(order.symbol)
            events.append(account_position(self.balances, self.locked, [base, quote], now_ns))
        return events

    def _report(
        self,
        order: Order,
        exec_type: str,
        now_ns: int,
        *,
        fill: Fill | None = None,
        maker: bool = False,
    ) -> Event:
        execution_id = self._next_execution_id
        self._next_execution_id += 1
        return execution_report(order, exec_type, now_ns, execution_id, fill=fill, maker=maker)

    def _credit(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

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

    def _quantity(self, raw: Any) -> Decimal:
        qty = _decimal(raw, "quantity")
        if qty < QTY_STEP or qty > MAX_QTY or qty % QTY_STEP != 0:
            raise OrderRejected(-1013, "Filter failure: LOT_SIZE")
        return qty
