"""Orders of the IBKR mock: the reply-confirmation flow over the shared matching engine (pure).

``POST /iserver/account/{acct}/orders`` with ``{"orders": [{conid, cOID, orderType, side,
quantity, tif, price?, auxPrice?}]}`` (``orderType`` ``MKT``, ``LMT``, ``STP`` with ``price``
the stop price, ``STOP_LIMIT`` with ``price`` the limit and ``auxPrice`` the stop) answers
either the order (``[{"order_id", "order_status", "encrypt_message"}]``) or a question
(``[{"id": <reply id>, "message": [...], "isSuppressed": false, "messageIds": [...]}]``).
``POST /iserver/reply/{id}`` with ``{"confirmed": true}`` answers the next question or the
order; ``false`` drops the order. The questions asked (ids and texts after the Client Portal
docs' examples): every market order ``o10151`` (market order confirmation), an order over
``size_limit`` shares ``o383`` (size limit), a limit (or stop) price more than 3% from the last
price ``o163`` (price percentage constraint). ``cOID`` is unique per account: a second order
with the same one is refused ("Local order ID ... is already registered").

Orders match in :class:`~mock_ws.matching.MatchingEngine` against the seeded market (fills are
booked as public trades; a stop rests untriggered until a trade reaches its stop price, then
executes as a market or limit order); IBKR statuses: ``PreSubmitted`` on acceptance,
``Submitted`` while working, ``Filled``, ``Cancelled``, ``Inactive`` (rejected). Every change
yields a ``sor`` order object and every fill a ``str`` execution, in the shapes of
``/iserver/account/orders`` and ``/iserver/account/trades``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tickpipe.mock_ws.ibkr.contracts import ContractTable
from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.matching import MatchingEngine, Order, OrderRejected

__all__ = ["IbkrBroker", "Outcome", "Question"]

#: The gateway's order types -> the matching engine's.
_ENGINE_TYPES = {
    "MKT": "MARKET",
    "LMT": "LIMIT",
    "STP": "STOP_LOSS",
    "STOP_LIMIT": "STOP_LOSS_LIMIT",
}
#: The engine's order types -> the order entry's ``orderType`` and ``origOrderType``.
_SHOWN_TYPES = {
    "MARKET": ("Market", "MARKET"),
    "LIMIT": ("Limit", "LIMIT"),
    "STOP_LOSS": ("Stop", "STOP"),
    "STOP_LOSS_LIMIT": ("Stop Limit", "STOP_LIMIT"),
}
_STATUS = {
    "NEW": "Submitted",
    "PARTIALLY_FILLED": "Submitted",
    "FILLED": "Filled",
    "CANCELED": "Cancelled",
    "EXPIRED": "Cancelled",
    "REJECTED": "Inactive",
}


@dataclass(frozen=True, slots=True)
class Question:
    message_id: str
    text: str


@dataclass
class _Ticket:
    reply_id: str
    account: str
    params: dict[str, Any]
    questions: list[Question]


@dataclass
class Outcome:
    """What a request produced: HTTP status and body, ``sor``/``str`` payloads, a record."""

    status: int
    body: Any
    orders: list[dict[str, Any]] = field(default_factory=list)  # sor args
    trades: list[dict[str, Any]] = field(default_factory=list)  # str args
    placed: dict[str, Any] | None = None  # ground truth of an order that reached the market


def _time_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%y%m%d%H%M%S")


class IbkrBroker:
    """One paper account at the mock (see the module docstring)."""

    def __init__(
        self,
        market: MarketSim,
        contracts: ContractTable,
        *,
        account_id: str,
        seed: int,
        size_limit: int = 500,
    ) -> None:
        self.market = market
        self.contracts = contracts
        self.account_id = account_id
        self.size_limit = size_limit
        self.engine = MatchingEngine(market)
        self._rng = random.Random(f"ibkr-broker:{seed}")
        self._tickets: dict[str, _Ticket] = {}
        self._cooids: set[str] = set()
        self._meta: dict[int, dict[str, Any]] = {}  # order id -> conid, tif, status override
        self.executions: list[dict[str, Any]] = []
        self.positions: dict[str, Decimal] = {}
        self.questions_asked = 0

    # ---- placing -------------------------------------------------------------------------------
    def place(self, account: str, body: Any, now_ns: int) -> Outcome:
        if account != self.account_id:
            return Outcome(400, {"error": f"Account {account} is not valid"})
        orders = body.get("orders") if isinstance(body, Mapping) else None
        if not isinstance(orders, list) or len(orders) != 1 or not isinstance(orders[0], Mapping):
            return Outcome(400, {"error": "Bad Request: one order expected in 'orders'"})
        ticket = dict(orders[0])
        try:
            params = self._params(ticket)
        except ValueError as exc:
            return Outcome(400, {"error": str(exc)})
        cooid = params["cOID"]
        if cooid and cooid in self._cooids:
            return Outcome(400, {"error": f"Local order ID={cooid} is already registered."})
        questions = self._questions(params)
        if questions:
            reply_id = self._reply_id()
            self._tickets[reply_id] = _Ticket(reply_id, account, params, questions)
            return Outcome(200, [self._ask(reply_id, questions[0])])
        return self._submit(params, now_ns)

    def reply(self, reply_id: str, body: Any, now_ns: int) -> Outcome:
        ticket = self._tickets.pop(reply_id, None)
        if ticket is None:
            return Outcome(400, {"error": f"Reply id {reply_id} is not valid or expired"})
        confirmed = body.get("confirmed") if isinstance(body, Mapping) else None
        if confirmed is not True:
            return Outcome(200, {"error": "Order was not submitted: the question was declined"})
        rest = ticket.questions[1:]
        if rest:
            new_id = self._reply_id()
            self._tickets[new_id] = _Ticket(new_id, ticket.account, ticket.params, rest)
            return Outcome(200, [self._ask(new_id, rest[0])])
        cooid = ticket.params["cOID"]
        if cooid and cooid in self._cooids:
            return Outcome(400, {"error": f"Local order ID={cooid} is already registered."})
        return self._submit(ticket.params, now_ns)

    def _reply_id(self) -> str:
        bits = f"{self._rng.getrandbits(128):032x}"
        return f"{bits[:8]}-{bits[8:12]}-{bits[12:16]}-{bits[16:20]}-{bits[20:]}"

    def _ask(self, reply_id: str, question: Question) -> dict[str, Any]:
        self.questions_asked += 1
        return {
            "id": reply_id,
            "message": [question.text],
            "isSuppressed": False,
            "messageIds": [question.message_id],
        }

    def _params(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        conid = ticket.get("conid")
        try:
            conid = int(conid)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError("Bad Request: conid required") from None
        symbol = self.contracts.by_conid.get(conid)
        if symbol is None:
            raise ValueError(f"Contract {conid} not found")
        order_type = str(ticket.get("orderType") or "")
        if order_type not in _ENGINE_TYPES:
            raise ValueError(
                f"orderType {order_type!r} is not supported (MKT, LMT, STP, STOP_LIMIT)"
            )
        side = str(ticket.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise ValueError("side must be BUY or SELL")
        try:
            qty = Decimal(str(ticket.get("quantity")))
        except InvalidOperation:
            raise ValueError("quantity must be a number") from None
        if not qty.is_finite() or qty <= 0 or qty != qty.to_integral_value():
            raise ValueError("quantity must be a positive whole number of shares")
        price, aux = ticket.get("price"), ticket.get("auxPrice")
        if order_type != "MKT" and price is None:
            raise ValueError(f"price required for {order_type} orders")
        if order_type == "STOP_LIMIT" and aux is None:
            raise ValueError("auxPrice (the stop price) required for STOP_LIMIT orders")
        return {
            "conid": conid,
            "symbol": symbol,
            "side": side,
            "orderType": order_type,
            "quantity": qty,
            "price": None if price is None else Decimal(str(price)),
            "aux": None if aux is None else Decimal(str(aux)),
            "tif": str(ticket.get("tif") or "DAY"),
            "cOID": str(ticket.get("cOID") or ""),
        }

    def _questions(self, params: Mapping[str, Any]) -> list[Question]:
        out: list[Question] = []
        side, qty, symbol = params["side"], params["quantity"], params["symbol"]
        if params["orderType"] == "MKT":
            out.append(
                Question(
                    "o10151",
                    f"You are about to submit a market order: {side} "
                    f"{qty} {symbol} @ MKT. Are you sure you want to submit "
                    "this order?",
                )
            )
        if qty > self.size_limit:
            out.append(
                Question(
                    "o383",
                    f'The following order "{side} {qty} {symbol} '
                    f'NASDAQ.NMS" size exceeds the Size Limit of '
                    f"{self.size_limit}. Are you sure you want to submit this "
                    "order?",
                )
            )
        price = params["price"]
        if price is not None:
            last = Decimal(self.market.last_price(symbol))
            if last and abs(price - last) / last > Decimal("0.03"):
                out.append(
                    Question(
                        "o163",
                        "The following order exceeds the price percentage "
                        "limit of 3%. Are you sure you want to submit this "
                        "order?",
                    )
                )
        return out

    def _submit(self, params: Mapping[str, Any], now_ns: int) -> Outcome:
        binance = {
            "symbol": params["symbol"],
            "side": params["side"],
            "type": _ENGINE_TYPES[params["orderType"]],
            "quantity": f"{params['quantity']:f}",
        }
        if params["cOID"]:
            binance["newClientOrderId"] = params["cOID"]
        if params["orderType"] in ("LMT", "STOP_LIMIT"):
            binance["price"] = f"{params['price']:.2f}"
            binance["timeInForce"] = "IOC" if params["tif"] == "IOC" else "GTC"
        if params["orderType"] == "STP":
            binance["stopPrice"] = f"{params['price']:.2f}"
        elif params["orderType"] == "STOP_LIMIT":
            binance["stopPrice"] = f"{params['aux']:.2f}"
        try:
            order = self.engine.accept(binance, now_ns)
        except OrderRejected as exc:
            return Outcome(400, {"error": exc.msg})
        if params["cOID"]:
            self._cooids.add(params["cOID"])
        self._meta[order.order_id] = {"conid": params["conid"], "tif": params["tif"]}
        outcome = Outcome(
            200,
            [
                {
                    "order_id": str(order.order_id),
                    "order_status": "PreSubmitted",
                    "encrypt_message": "1",
                }
            ],
        )
        outcome.orders.append(self.order_json(order, status="PreSubmitted"))
        self._apply(order, self.engine.execute(order, now_ns), outcome)
        outcome.placed = {
            "order_id": order.order_id,
            "cOID": params["cOID"],
            "symbol": params["symbol"],
            "side": params["side"],
            "qty": f"{params['quantity']:f}",
        }
        return outcome

    def _apply(self, order: Order, events: list[dict[str, Any]], outcome: Outcome) -> None:
        for event in events:
            if event.get("e") != "executionReport":
                continue
            if event.get("x") == "TRADE":
                outcome.trades.append(self._execution(order, event))
        outcome.orders.append(self.order_json(order))

    def _execution(self, order: Order, event: Mapping[str, Any]) -> dict[str, Any]:
        qty, price = Decimal(event["l"]), Decimal(event["L"])
        signed = qty if order.side == "BUY" else -qty
        self.positions[order.symbol] = self.positions.get(order.symbol, Decimal(0)) + signed
        ms = int(event["T"])
        conid = self._meta[order.order_id]["conid"]
        execution = {
            "execution_id": f"0000e0d5.{int(event['t']):08x}.01.01",
            "symbol": order.symbol,
            "supports_tax_opt": "1",
            "side": "B" if order.side == "BUY" else "S",
            "order_description": f"{'Bot' if order.side == 'BUY' else 'Sold'} {qty:f} @ "
            f"{price:.2f} on ISLAND",
            "trade_time": datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y%m%d-%H:%M:%S"),
            "trade_time_r": ms,
            "size": float(qty),
            "price": f"{price:.2f}",
            "order_ref": order.client_order_id,
            "submitter": "mockuser1",
            "exchange": "ISLAND",
            "commission": "1.00",
            "net_amount": float(qty * price),
            "account": self.account_id,
            "accountCode": self.account_id,
            "company_name": self.contracts.name(order.symbol),
            "contract_description_1": order.symbol,
            "sec_type": "STK",
            "listing_exchange": "NASDAQ.NMS",
            "conid": conid,
            "conidEx": str(conid),
            "clearing_id": "IB",
            "clearing_name": "IB",
            "liquidation_trade": "0",
            "order_id": order.order_id,
        }
        self.executions.append(execution)
        return execution

    # ---- market, cancel, listing ---------------------------------------------------------------
    def on_trades(self, trades: list[SimTrade], now_ns: int) -> Outcome:
        """Fill resting limit orders the market traded through."""
        outcome = Outcome(200, None)
        for trade in trades:
            for event in self.engine.on_market_trade(trade, now_ns):
                if event.get("e") == "executionReport" and event.get("x") == "TRADE":
                    order = self.engine.find(order_id=event["i"])
                    outcome.trades.append(self._execution(order, event))
                    outcome.orders.append(self.order_json(order))
        return outcome

    def cancel(self, account: str, order_id: str, now_ns: int) -> Outcome:
        if account != self.account_id:
            return Outcome(400, {"error": f"Account {account} is not valid"})
        try:
            order = self.engine.find(order_id=int(order_id))
        except (OrderRejected, ValueError):
            return Outcome(400, {"error": f"OrderID {order_id} doesn't exist"})
        if not order.is_open:
            return Outcome(400, {"error": f"OrderID {order_id} is already {self._status(order)}"})
        self.engine.cancel({"symbol": order.symbol, "orderId": order.order_id}, now_ns)
        outcome = Outcome(
            200,
            {
                "msg": "Request was submitted",
                "order_id": order.order_id,
                "conid": self._meta[order.order_id]["conid"],
                "account": self.account_id,
            },
        )
        outcome.orders.append(self.order_json(order))
        return outcome

    def live_orders(self) -> dict[str, Any]:
        return {"orders": [self.order_json(o) for o in self.engine.orders], "snapshot": True}

    def trades(self) -> list[dict[str, Any]]:
        return list(self.executions)

    def positions_json(self) -> list[dict[str, Any]]:
        out = []
        for symbol, qty in self.positions.items():
            last = Decimal(self.market.last_price(symbol))
            out.append(
                {
                    "acctId": self.account_id,
                    "conid": self.contracts.by_symbol[symbol],
                    "contractDesc": symbol,
                    "position": float(qty),
                    "mktPrice": float(last),
                    "mktValue": float(qty * last),
                    "currency": "USD",
                    "assetClass": "STK",
                    "ticker": symbol,
                }
            )
        return out

    def pnl(self) -> dict[str, Any]:
        value = sum(
            (q * Decimal(self.market.last_price(s)) for s, q in self.positions.items()), Decimal(0)
        )
        return {
            f"{self.account_id}.Core": {
                "rowType": 1,
                "dpl": 0.0,
                "nl": float(value),
                "upl": 0.0,
                "el": 0.0,
                "mv": float(value),
            }
        }

    def _status(self, order: Order) -> str:
        return _STATUS.get(order.status, "Submitted")

    def order_json(self, order: Order, *, status: str | None = None) -> dict[str, Any]:
        meta = self._meta.get(order.order_id, {})
        filled = order.executed_qty
        average = order.cum_quote / filled if filled else Decimal(0)
        kind, original = _SHOWN_TYPES[order.type]
        body: dict[str, Any] = {
            "acct": self.account_id,
            "conidex": str(meta.get("conid", "")),
            "conid": meta.get("conid"),
            "orderId": order.order_id,
            "cashCcy": "USD",
            "sizeAndFills": f"{filled:f}/{order.orig_qty:f}",
            "orderDesc": f"{order.side.title()} {order.orig_qty:f} {kind}",
            "description1": order.symbol,
            "ticker": order.symbol,
            "secType": "STK",
            "listingExchange": "NASDAQ.NMS",
            "remainingQuantity": float(order.remaining),
            "filledQuantity": float(filled),
            "totalSize": float(order.orig_qty),
            "companyName": self.contracts.name(order.symbol),
            "status": status or self._status(order),
            "origOrderType": original,
            "supportsTaxOpt": "1",
            "lastExecutionTime": _time_text(order.update_time_ms),
            "lastExecutionTime_r": order.update_time_ms,
            "orderType": kind,
            "order_ref": order.client_order_id,
            "timeInForce": meta.get("tif", "DAY"),
            "side": order.side,
            "avgPrice": f"{average:.2f}" if filled else "",
        }
        if order.type in ("LIMIT", "STOP_LOSS_LIMIT"):
            body["price"] = f"{order.price:.2f}"
        if order.type == "STOP_LOSS":
            body["price"] = f"{order.stop_price:.2f}"
        if order.type == "STOP_LOSS_LIMIT":
            body["auxPrice"] = f"{order.stop_price:.2f}"
        return body
