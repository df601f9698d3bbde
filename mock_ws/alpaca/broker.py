"""Match Alpaca orders against the simulated market; keep positions and the account (pure).

Market orders (and limits marketable on arrival) fill at once at the symbol's current price
and are booked as public trades in the market. Resting limits fill at their limit price as
simulated trades print through it, up to each trade's size, so a large order fills in
``partial_fill`` steps. Stop and stop-limit orders rest untriggered until a trade printed after
they arrived reaches the stop price (a buy at or above it, a sell at or below it; already
reached on arrival: at once); then a stop order fills at that trade's price as a market order
and a stop-limit order works as a limit order at its limit price. IOC/FOK limits that cannot
fill at once are canceled. Every change returns ``trade_updates`` payloads (the ``data``
object): ``new``, ``fill``, ``partial_fill``, ``canceled``, ``expired``, ``rejected``,
``replaced``. ``reject_next`` makes the next accepted orders end ``rejected`` (a venue-side
rejection after acceptance).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tickpipe.common.units import MS
from tickpipe.mock_ws.alpaca import calendar
from tickpipe.mock_ws.alpaca.account import Position, account_json, asset_id, positions_json
from tickpipe.mock_ws.alpaca.codec import rfc3339
from tickpipe.mock_ws.alpaca.marketdata import is_crypto
from tickpipe.mock_ws.alpaca.orders import (
    STOP_TYPES,
    AlpacaOrder,
    TradingError,
    decimal_text,
    parse_order_request,
)
from tickpipe.mock_ws.market import MarketSim, SimTrade

__all__ = ["AlpacaBroker"]

QTY_QUANTUM = Decimal("0.000000001")
SIM_MIN_QTY = Decimal("0.00001")
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_FORBIDDEN = 40310000
CODE_DUPLICATE = 40010001
Event = dict[str, Any]


class AlpacaBroker:
    """One paper account trading against a :class:`~mock_ws.market.MarketSim`."""

    def __init__(
        self,
        market: MarketSim,
        *,
        seed: int = 1,
        cash: str = "100000",
        hours: str = "venue",
        around_the_clock: frozenset[str] = frozenset(),
    ) -> None:
        self.market = market
        self._rng = random.Random(f"alpaca-broker:{seed}")
        self.account_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        #: "venue": stocks trade in the regular session only; "always": around the clock
        self.hours = hours
        #: symbols that trade whatever the hours (the test stream's FAKEPACA)
        self.around_the_clock = around_the_clock
        self.orders: dict[str, AlpacaOrder] = {}
        self._client_ids: dict[str, str] = {}
        self.positions: dict[str, Position] = {}
        self.cash = Decimal(cash)
        self.reject_next = 0
        #: every fill as a ``GET /v2/account/activities`` FILL entry, oldest first
        self.activities: list[dict[str, Any]] = []

    # ---- orders -----------------------------------------------------------------------------

    def resolve_symbol(self, symbol: str) -> str | None:
        """Map ``BTC/USD``, ``BTCUSD`` or ``aapl`` to a simulated symbol, else ``None``."""
        wanted = symbol.upper()
        for known in self.market.symbols:
            if wanted in (known, known.replace("/", "")):
                return known
        return None

    def submit(self, body: Any, now_ns: int) -> tuple[dict[str, Any], list[Event]]:
        """Accept an order body; return the REST order object and the trade updates."""
        raw_symbol = body.get("symbol") if isinstance(body, dict) else None
        symbol = self.resolve_symbol(raw_symbol) if isinstance(raw_symbol, str) else None
        request = parse_order_request(body, crypto=symbol is not None and is_crypto(symbol))
        if symbol is None:
            raise TradingError(422, CODE_DUPLICATE, f'asset "{request.symbol}" not found')
        client_id = request.client_order_id or self._uuid()
        if client_id in self._client_ids:
            raise TradingError(422, CODE_DUPLICATE, "client_order_id must be unique")
        self._check_funds(symbol, request.side, request.qty, request.notional,
                          request.limit_price or request.stop_price)  # fmt: skip
        order = AlpacaOrder(
            id=self._uuid(),
            client_order_id=client_id,
            symbol=symbol,
            asset_id=asset_id(symbol),
            asset_class="crypto" if is_crypto(symbol) else "us_equity",
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force,
            qty=request.qty,
            notional=request.notional,
            limit_price=request.limit_price,
            extended_hours=request.extended_hours,
            created_ns=now_ns,
            status="accepted",
            updated_ns=now_ns,
            stop_price=request.stop_price,
            triggered=request.type not in STOP_TYPES,
        )
        self.orders[order.id] = order
        self._client_ids[client_id] = order.id
        if not self.works_now(order, now_ns):
            # Alpaca, "Orders submitted outside of eligible trading hours": held as accepted,
            # queued for the next session's open (or the pre-market, for extended_hours).
            return order.to_json(), []
        response = order.to_json()
        return response, self._start(order, now_ns)

    def _always(self, symbol: str) -> bool:
        return self.hours == "always" or is_crypto(symbol) or symbol in self.around_the_clock

    def trades_now(self, symbol: str, now_ns: int) -> bool:
        """Tell whether ``symbol`` prints trades at ``now_ns`` (crypto 24/7, stocks IEX's hours)."""
        return self._always(symbol) or calendar.prints_now(now_ns)

    def works_now(self, order: AlpacaOrder, now_ns: int) -> bool:
        """Tell whether ``order`` may fill at ``now_ns``: in the regular session, or in the
        pre-market and after-hours when it was sent with ``extended_hours``."""
        if self._always(order.symbol) or calendar.is_open(now_ns):
            return True
        return order.extended_hours and calendar.in_extended_hours(now_ns)

    def tick(self, now_ns: int) -> list[Event]:
        """Release held orders at the open; expire DAY stock orders at the close."""
        events: list[Event] = []
        for order in list(self.orders.values()):
            if not order.is_open or not self.works_now(order, now_ns):
                if (
                    order.is_open
                    and order.status != "accepted"
                    and order.time_in_force == "day"
                    and order.asset_class == "us_equity"
                    and self.hours == "venue"
                    and order.symbol not in self.around_the_clock
                ):
                    # "day": canceled automatically at the end of regular trading hours (of
                    # the after-hours session for an extended_hours order).
                    events.append(self._finish(order, "expired", now_ns))
                continue
            if order.status == "accepted" and order.replaces is None:
                events.extend(self._start(order, now_ns))
        return events

    def replace_order(self, order_id: str, body: Any, now_ns: int) -> tuple[Any, list[Event]]:
        """Replace an open limit order (``PATCH``); return the new order and the updates."""
        old = self.get(order_id)
        if not old.is_open or old.type != "limit":
            raise TradingError(422, CODE_UNPROCESSABLE, "order is not replaceable")
        if not isinstance(body, dict):
            raise TradingError(422, CODE_UNPROCESSABLE, "request body format is invalid")
        merged = {
            "symbol": old.symbol,
            "side": old.side,
            "type": "limit",
            "time_in_force": body.get("time_in_force") or old.time_in_force,
            "qty": body.get("qty") or decimal_text(old.qty),
            "limit_price": body.get("limit_price") or decimal_text(old.limit_price),
            "client_order_id": body.get("client_order_id"),
        }
        request = parse_order_request(merged, crypto=is_crypto(old.symbol))
        client_id = request.client_order_id or self._uuid()
        if client_id in self._client_ids:
            raise TradingError(422, CODE_DUPLICATE, "client_order_id must be unique")
        new = replace(
            old,
            id=self._uuid(),
            client_order_id=client_id,
            time_in_force=request.time_in_force,
            qty=request.qty,
            limit_price=request.limit_price,
            created_ns=now_ns,
            updated_ns=now_ns,
            status="accepted",
            filled_qty=Decimal(0),
            filled_notional=Decimal(0),
            replaces=old.id,
        )
        old.status, old.replaced_ns, old.updated_ns, old.replaced_by = (
            "replaced",
            now_ns,
            now_ns,
            new.id,
        )
        self.orders[new.id] = new
        self._client_ids[client_id] = new.id
        events = [self._event("replaced", old, now_ns)]
        return new.to_json(), events + self._start(new, now_ns)

    def cancel(self, order_id: str, now_ns: int) -> list[Event]:
        """Cancel an open order; raise 404 for an unknown id, 422 if it is not cancelable."""
        order = self.get(order_id)
        if not order.is_open:
            raise TradingError(422, CODE_UNPROCESSABLE, f"order is already in {order.status} state")
        return [self._finish(order, "canceled", now_ns)]

    def cancel_all(self, now_ns: int) -> tuple[list[dict[str, Any]], list[Event]]:
        """Cancel every open order; return the 207 body and the updates."""
        results, events = [], []
        for order in [o for o in self.orders.values() if o.is_open]:
            events.append(self._finish(order, "canceled", now_ns))
            results.append({"id": order.id, "status": 200, "body": order.to_json()})
        return results, events

    def expire(self, now_ns: int, time_in_force: tuple[str, ...] = ("day",)) -> list[Event]:
        """Expire open orders with these times in force (the end of a trading day)."""
        return [
            self._finish(o, "expired", now_ns)
            for o in list(self.orders.values())
            if o.is_open and o.time_in_force in time_in_force
        ]

    def on_trades(self, trades: list[SimTrade], now_ns: int) -> list[Event]:
        """Trigger stop orders and fill resting limit orders against simulated trades printed
        after they arrived."""
        events: list[Event] = []
        for trade in trades:
            trade_ns = trade.trade_time_ms * MS
            price = Decimal(trade.price)
            available = Decimal(trade.qty)
            if not is_crypto(trade.symbol):
                available = Decimal(max(1, int(available)))
            for order in list(self.orders.values()):
                if available <= 0:
                    break
                if not order.is_open or order.symbol != trade.symbol:
                    continue
                if order.status == "accepted":  # held until its hours (or the replace) start it
                    continue
                if order.created_ns > trade_ns:
                    continue
                if not order.triggered:
                    if not _reaches(order, price):
                        continue
                    order.triggered = True
                    if order.type == "stop":  # now a market order: fills at this trade
                        events.append(self._market_fill(order, price, now_ns))
                        continue
                if order.type not in ("limit", "stop_limit") or order.limit_price is None:
                    continue
                crosses = (
                    price <= order.limit_price
                    if order.side == "buy"
                    else (price >= order.limit_price)
                )
                remaining = order.remaining()
                if not crosses or not remaining:
                    continue
                qty = min(remaining, available)
                available -= qty
                events.append(self._fill(order, qty, order.limit_price, now_ns))
        return events

    def get(self, order_id: str) -> AlpacaOrder:
        try:
            return self.orders[order_id]
        except KeyError:
            raise TradingError(404, CODE_NOT_FOUND, "order not found") from None

    def by_client_order_id(self, client_order_id: str) -> AlpacaOrder:
        order_id = self._client_ids.get(client_order_id)
        if order_id is None:
            raise TradingError(404, CODE_NOT_FOUND, "order not found")
        return self.orders[order_id]

    def list_orders(
        self,
        status: str = "open",
        *,
        limit: int = 50,
        direction: str = "desc",
        symbols: set[str] | None = None,
    ) -> list[AlpacaOrder]:
        """Return orders by ``status`` open|closed|all, newest first unless ``asc``."""
        chosen = [
            o
            for o in self.orders.values()
            if (status == "all" or (status == "open") == o.is_open)
            and (not symbols or o.symbol in symbols or o.symbol.replace("/", "") in symbols)
        ]
        chosen.sort(key=lambda o: o.created_ns, reverse=direction != "asc")
        return chosen[:limit]

    # ---- account ----------------------------------------------------------------------------

    def position_json(self, symbol: str) -> dict[str, Any]:
        """Return ``GET /v2/positions/{symbol}``; 404 "position does not exist" when flat."""
        known = self.resolve_symbol(symbol)
        position = self.positions.get(known) if known is not None else None
        if position is None or position.qty == 0:
            raise TradingError(404, CODE_NOT_FOUND, "position does not exist")
        return positions_json([position], self.market)[0]

    def close_position(
        self, symbol: str, query: dict[str, str], now_ns: int
    ) -> tuple[dict[str, Any], list[Event]]:
        """Close (all, ``qty`` or ``percentage`` of) a position with a market order."""
        self.position_json(symbol)  # 404 when flat
        known = self.resolve_symbol(symbol)
        assert known is not None
        held = self.positions[known].qty
        qty = abs(held)
        try:
            if query.get("qty"):
                qty = Decimal(query["qty"])
            elif query.get("percentage"):
                qty = (abs(held) * Decimal(query["percentage"]) / 100).quantize(
                    QTY_QUANTUM, ROUND_DOWN
                )
        except ArithmeticError:
            raise TradingError(422, CODE_UNPROCESSABLE, "invalid qty or percentage") from None
        if not 0 < qty <= abs(held):
            raise TradingError(422, CODE_UNPROCESSABLE, "invalid qty or percentage")
        body = {
            "symbol": known,
            "qty": decimal_text(qty),
            "side": "sell" if held > 0 else "buy",
            "type": "market",
            "time_in_force": "gtc" if is_crypto(known) else "day",
        }
        return self.submit(body, now_ns)

    def close_all_positions(self, now_ns: int) -> tuple[list[dict[str, Any]], list[Event]]:
        """Close every position (``DELETE /v2/positions``): the 207 body and the updates."""
        results, events = [], []
        for symbol, position in list(self.positions.items()):
            if position.qty == 0:
                continue
            order, updates = self.close_position(symbol, {}, now_ns)
            events.extend(updates)
            results.append({"symbol": symbol, "status": 200, "body": order})
        return results, events

    def positions_json(self) -> list[dict[str, Any]]:
        """Return ``GET /v2/positions``: every non-flat position valued at the current price."""
        return positions_json(self.positions.values(), self.market)

    def account_json(self) -> dict[str, Any]:
        """Return ``GET /v2/account`` with cash, buying power and equity from the fills."""
        return account_json(
            self.account_id, self.cash, self.buying_power(), self.positions.values(), self.market
        )

    def buying_power(self) -> Decimal:
        """Return cash less what open buy limit orders reserve."""
        reserved = sum(
            (
                (o.remaining() or Decimal(0)) * (o.limit_price or Decimal(0))
                for o in self.orders.values()
                if o.is_open and o.side == "buy"
            ),
            Decimal(0),
        )
        return self.cash - reserved

    # ---- internals --------------------------------------------------------------------------

    def _uuid(self) -> str:
        # Random, as the venue's: a journal that outlives the mock never sees an id again.
        return str(uuid.uuid4())

    def _check_funds(
        self,
        symbol: str,
        side: str,
        qty: Decimal | None,
        notional: Decimal | None,
        limit_price: Decimal | None,
    ) -> None:
        price = limit_price or Decimal(self.market.last_price(symbol))
        if side == "buy":
            cost = notional if notional is not None else (qty or Decimal(0)) * price
            if cost > self.buying_power():
                raise TradingError(403, CODE_FORBIDDEN, "insufficient buying power")
        elif is_crypto(symbol):
            held = self.positions.get(symbol, Position(symbol)).qty
            wanted = qty if qty is not None else (notional or Decimal(0)) / price
            if wanted > held:
                raise TradingError(
                    403,
                    CODE_FORBIDDEN,
                    f"insufficient balance for {symbol.split('/')[0]} "
                    f"(requested: {decimal_text(wanted)}, available: {decimal_text(held)})",
                )

    def _start(self, order: AlpacaOrder, now_ns: int) -> list[Event]:
        if self.reject_next > 0:
            self.reject_next -= 1
            order.failed_ns = now_ns
            return [self._finish(order, "rejected", now_ns)]
        order.status, order.updated_ns = "new", now_ns
        events = [self._event("new", order, now_ns)]
        price = Decimal(self.market.last_price(order.symbol))
        if not order.triggered:
            if not _reaches(order, price):
                return events  # rests until a trade reaches the stop price
            order.triggered = True
        marketable = order.type in ("market", "stop") or (
            order.limit_price is not None
            and (price <= order.limit_price if order.side == "buy" else price >= order.limit_price)
        )
        if marketable:
            events.append(self._market_fill(order, price, now_ns))
        elif order.time_in_force in ("ioc", "fok"):
            events.append(self._finish(order, "canceled", now_ns))
        return events

    def _market_fill(self, order: AlpacaOrder, price: Decimal, now_ns: int) -> Event:
        """Fill what is left of ``order`` at ``price`` and book it as a public trade."""
        qty = order.remaining()
        if qty is None:  # notional
            qty = ((order.notional or Decimal(0)) / price).quantize(QTY_QUANTUM, ROUND_DOWN)
        if qty <= 0:
            return self._finish(order, "canceled", now_ns)  # a notional too small for one unit
        event = self._fill(order, qty, price, now_ns, total=qty)
        if qty >= SIM_MIN_QTY:
            self.market.record_fill(order.symbol, f"{qty:f}", order.side == "sell", now_ns)
        return event

    def _fill(
        self,
        order: AlpacaOrder,
        qty: Decimal,
        price: Decimal,
        now_ns: int,
        total: Decimal | None = None,
    ) -> Event:
        order.filled_qty += qty
        order.filled_notional += qty * price
        order.updated_ns = now_ns
        target = order.qty if order.qty is not None else total
        done = target is None or order.filled_qty >= target
        order.status = "filled" if done else "partially_filled"
        if done:
            order.filled_ns = now_ns
        self.cash += -qty * price if order.side == "buy" else qty * price
        position = self.positions.setdefault(order.symbol, Position(order.symbol))
        position.apply(order.side, qty, price)
        event = self._event("fill" if done else "partial_fill", order, now_ns)
        event.update(
            execution_id=self._uuid(),
            price=decimal_text(price),
            qty=decimal_text(qty),
            position_qty=decimal_text(position.qty),
        )
        # Alpaca, "Account activities": trade activities (activity_type FILL).
        filled = order.filled_qty
        leaves = (target - filled) if target is not None and not done else Decimal(0)
        self.activities.append(
            {
                "id": f"{rfc3339(now_ns)}::{event['execution_id']}",
                "activity_type": "FILL",
                "transaction_time": rfc3339(now_ns),
                "type": "fill" if done else "partial_fill",
                "price": decimal_text(price),
                "qty": decimal_text(qty),
                "side": order.side,
                "symbol": order.symbol.replace("/", "")
                if order.asset_class == "crypto"
                else order.symbol,
                "leaves_qty": decimal_text(leaves),
                "order_id": order.id,
                "cum_qty": decimal_text(filled),
                "order_status": order.status,
            }
        )
        return event

    def _finish(self, order: AlpacaOrder, status: str, now_ns: int) -> Event:
        order.status, order.updated_ns = status, now_ns
        if status == "canceled":
            order.canceled_ns = now_ns
        elif status == "expired":
            order.expired_ns = now_ns
        return self._event(status, order, now_ns)

    def _event(self, name: str, order: AlpacaOrder, now_ns: int) -> Event:
        return {"event": name, "timestamp": rfc3339(now_ns), "order": order.to_json()}


def _reaches(order: AlpacaOrder, price: Decimal) -> bool:
    """Whether a trade at ``price`` triggers the stop ``order`` (a buy from below, a sell above)."""
    stop = order.stop_price
    if stop is None:
        return True
    return price >= stop if order.side == "buy" else price <= stop
