"""Match orders against the simulated books and market (pure, no I/O).

Requests are checked by :mod:`mock_ws.order_rules` (parameters and the symbol's filters) and
then against the account (duplicate ids, balances, MAX_NUM_ORDERS). MARKET orders (by
``quantity`` or ``quoteOrderQty``) fill fully at the symbol's current price. LIMIT_MAKER orders
rest, or are refused (``-2010``) if they would take. STOP_LOSS, TAKE_PROFIT and their _LIMIT
forms wait (``isWorking`` false) until a trade reaches ``stopPrice``, then execute as a MARKET
or LIMIT order. LIMIT orders (``timeInForce`` GTC, IOC, FOK) take the levels of the symbol's
:class:`~mock_ws.book.SimBook` they cross (partial fills, one public trade per level); the rest
of a GTC order rests, IOC expires, and a FOK that cannot fill completely expires untouched. A
resting order fills as a maker once the market trades at or through its price
(:meth:`MatchingEngine.on_market_trade`). Each order yields ``executionReport`` events (NEW,
TRADE, CANCELED, EXPIRED) and an ``outboundAccountPosition`` for the changed assets; funds of
resting orders are locked. Every fill is booked as a public trade in the market, so an
executionReport's ``t`` appears on ``<symbol>@trade``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickpipe.common.units import MS
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
from tickpipe.mock_ws.order_rules import (
    MAX_NUM_ALGO_ORDERS,
    MAX_NUM_ORDERS,
    QTY_STEP,
    STOP_TYPES,
    check_notional,
    check_percent_price,
    market_qty,
    parse_order,
    symbol_param,
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

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD")
Event = dict[str, Any]


def split_symbol(symbol: str) -> tuple[str, str]:
    """Split ``BTCUSDT`` into ``("BTC", "USDT")`` by its quote-asset suffix."""
    for quote in _QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-4], symbol[-4:]


def _triggers(order_type: str, side: str, stop_price: Decimal, price: Decimal) -> bool:
    """Tell whether a trade at ``price`` triggers a stop order (Spot API, "Order types").

    STOP_LOSS triggers when the price falls to the stop (SELL) or rises to it (BUY);
    TAKE_PROFIT the other way round.
    """
    falling = (side == "SELL") == order_type.startswith("STOP_LOSS")
    return price <= stop_price if falling else price >= stop_price


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
        order = self.check(params, now_ns)
        if order.lock_price:
            self._lock(order, order.orig_qty)
        self._next_order_id += 1
        self._by_id[order.order_id] = order
        self._by_client_id[order.client_order_id] = order
        return order

    def check(self, params: Mapping[str, Any], now_ns: int) -> Order:
        """Return the order ``params`` would place, or raise the venue's refusal (no effect).

        This is all ``order.test`` does; :meth:`accept` registers the order it returns.
        """
        spec = parse_order(params, self.market.symbols)
        symbol, side, order_type = spec.symbol, spec.side, spec.type
        client_id = spec.client_order_id
        if client_id:
            previous = self._by_client_id.get(client_id)
            if previous is not None and previous.is_open:
                raise OrderRejected(-2010, "Duplicate order sent.")
        else:
            client_id = f"mock{self._auto_ids + 1:018d}"
        last = Decimal(self.market.last_price(symbol))
        qty = spec.qty if spec.qty is not None else market_qty(spec.quote_qty, last)
        priced = spec.price > 0
        if priced:
            check_percent_price(side, spec.price, last)
        market_like = order_type in ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
        check_notional(qty, spec.price if priced else spec.stop_price or last, market_like)
        open_orders = self.open_orders(symbol)
        if len(open_orders) >= MAX_NUM_ORDERS:
            raise OrderRejected(-1013, "Filter failure: MAX_NUM_ORDERS")
        if order_type in STOP_TYPES:
            if sum(o.type in STOP_TYPES for o in open_orders) >= MAX_NUM_ALGO_ORDERS:
                raise OrderRejected(-1013, "Filter failure: MAX_NUM_ALGO_ORDERS")
            if _triggers(order_type, side, spec.stop_price, last):
                raise OrderRejected(-2010, "Stop price would trigger immediately.")
        lock_price = spec.price if priced else spec.stop_price
        base, quote = split_symbol(symbol)
        cost_price = lock_price or last
        if side == "BUY" and self.balances.get(quote, Decimal(0)) < qty * cost_price:
            raise OrderRejected(-2010, "Account has insufficient balance for requested action.")
        if side == "SELL" and self.balances.get(base, Decimal(0)) < qty:
            raise OrderRejected(-2010, "Account has insufficient balance for requested action.")
        now_ms = now_ns // MS
        order = Order(
            symbol=symbol,
            order_id=self._next_order_id,
            client_order_id=client_id,
            side=side,
            type=order_type,
            orig_qty=qty,
            time_ms=now_ms,
            update_time_ms=now_ms,
            price=spec.price,
            time_in_force=spec.time_in_force,
            stop_price=spec.stop_price,
            orig_quote_qty=spec.quote_qty,
            working=order_type not in STOP_TYPES,
            lock_price=lock_price,
        )
        if order_type == "LIMIT_MAKER" and self._crossing(order, dry_run=True):
            # Spot API, "LIMIT_MAKER": rejected if it would immediately match and trade.
            raise OrderRejected(-2010, "Order would immediately match and take.")
        if not spec.client_order_id:
            self._auto_ids += 1
        return order

    def execute(self, order: Order, now_ns: int) -> list[Event]:
        """Execute a just-accepted order as a taker; return its reports and account update."""
        if order.type == "MARKET":
            price = Decimal(self.market.last_price(order.symbol))
            self._fill(order, price, order.remaining, now_ns, maker=False)
        elif order.working and order.type != "LIMIT_MAKER":
            self._take(order, now_ns)
        return self._flush(order, now_ns, force=order.type != "MARKET")

    def _take(self, order: Order, now_ns: int) -> None:
        """Take the book's levels a priced order crosses; expire what IOC/FOK leave."""
        fillable = sum(q for _, q in self._crossing(order, dry_run=True))
        if order.time_in_force != "FOK" or fillable >= order.remaining:
            for price, qty in self._crossing(order, dry_run=False):
                self._fill(order, price, qty, now_ns, maker=False)
        if order.remaining > 0 and order.time_in_force != "GTC":
            self._close(order, "EXPIRED", now_ns)

    def cancel_all(
        self, params: Mapping[str, Any], now_ns: int
    ) -> tuple[list[dict[str, Any]], list[Event]]:
        """Cancel every open order of a symbol (``DELETE /api/v3/openOrders``); -2011 if none."""
        symbol = symbol_param(params, self.market.symbols)
        orders = self.open_orders(symbol)
        if not orders:
            raise OrderRejected(-2011, "Unknown order sent.")
        results = []
        for order in orders:
            self._auto_ids += 1
            order.cancel_client_id = f"cxl{self._auto_ids:018d}"
            self._close(order, "CANCELED", now_ns)
            results.append(order.cancel_result(order.cancel_client_id))
        return results, self._flush(orders[-1], now_ns)

    def cancel(self, params: Mapping[str, Any], now_ns: int) -> tuple[dict[str, Any], list[Event]]:
        """Cancel an open order; return the cancel result and events (-2011 if not open)."""
        symbol = symbol_param(params, self.market.symbols)
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
            if order.type == "MARKET" or order.time_ms * MS > now_ns:
                continue
            if not order.working:
                if not _triggers(order.type, order.side, order.stop_price, price):
                    continue
                order.working = True  # triggered: a market order, or a limit order that works
                if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
                    self._fill(order, price, order.remaining, now_ns, maker=False)
                else:
                    self._take(order, now_ns)
                events.extend(self._flush(order, now_ns, force=True))
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
        now_ms = now_ns // MS
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
        asset, amount = (quote, qty * order.lock_price) if order.side == "BUY" else (base, qty)
        self._credit(asset, -amount)
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount

    def _unlock(self, order: Order, qty: Decimal) -> None:
        base, quote = split_symbol(order.symbol)
        asset, amount = (quote, qty * order.lock_price) if order.side == "BUY" else (base, qty)
        self.locked[asset] = self.locked.get(asset, Decimal(0)) - amount
        self._credit(asset, amount)

    def _fill(
        self, order: Order, price: Decimal, qty: Decimal, now_ns: int, *, maker: bool
    ) -> None:
        base, quote = split_symbol(order.symbol)
        if order.lock_price:
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
        fill = Fill(price, qty, commission, commission_asset, trade.trade_id, now_ns // MS, maker)
        order.fills.append(fill)
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        order.update_time_ms = now_ns // MS
        self._pending.append(self._report(order, "TRADE", now_ns, fill=fill, maker=maker))

    def _close(self, order: Order, status: str, now_ns: int) -> None:
        if order.lock_price and order.remaining > 0:
            self._unlock(order, order.remaining)
        order.status = status
        order.update_time_ms = now_ns // MS
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
