"""Hold one order as the venue keeps it and render Binance's order result shapes (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "EIGHT",
    "Fill",
    "Order",
    "OrderRejected",
    "account_position",
    "account_result",
    "d8",
    "execution_report",
]

EIGHT = Decimal("0.00000001")


def d8(value: Decimal) -> str:
    """Format a decimal with exactly eight decimals."""
    return f"{value.quantize(EIGHT):f}"


class OrderRejected(Exception):
    """The venue refuses the request: Binance ``code``/``msg`` and the HTTP-like ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True)
class Fill:
    """One execution of an order."""

    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int
    time_ms: int = 0
    maker: bool = False


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
    price: Decimal = Decimal(0)
    time_in_force: str = "GTC"
    cancel_client_id: str = ""
    stop_price: Decimal = Decimal(0)
    orig_quote_qty: Decimal = Decimal(0)
    #: False while a stop order waits for its trigger (the venue's ``isWorking``)
    working: bool = True
    #: the price the order's funds are locked at (0: nothing locked, MARKET orders)
    lock_price: Decimal = Decimal(0)

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def _terms(self) -> dict[str, Any]:
        """The order's terms and progress, as every order answer of the venue shows them."""
        return {
            "price": d8(self.price),
            "origQty": d8(self.orig_qty),
            "executedQty": d8(self.executed_qty),
            "origQuoteOrderQty": d8(self.orig_quote_qty),
            "cummulativeQuoteQty": d8(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
        }

    def query_result(self) -> dict[str, Any]:
        """Return the ``order.status`` result shape."""
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            **self._terms(),
            "stopPrice": d8(self.stop_price),
            "icebergQty": "0.00000000",
            "time": self.time_ms,
            "updateTime": self.update_time_ms or self.time_ms,
            "isWorking": self.working,
            "workingTime": self.time_ms if self.working else -1,
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
        out.update(self._terms(), workingTime=self.time_ms, selfTradePreventionMode="NONE")
        if resp_type == "FULL":  # fills of this request only (resting fills come later)
            out["fills"] = [
                {
                    "price": d8(f.price),
                    "qty": d8(f.qty),
                    "commission": d8(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in self.fills
            ]
        return out

    def cancel_result(self, cancel_client_id: str) -> dict[str, Any]:
        """Return the ``order.cancel`` / ``DELETE /api/v3/order`` result shape."""
        return {
            "symbol": self.symbol,
            "origClientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": cancel_client_id,
            "transactTime": self.update_time_ms,
            **self._terms(),
            "selfTradePreventionMode": "NONE",
        }


def execution_report(
    order: Order,
    exec_type: str,
    now_ns: int,
    execution_id: int,
    *,
    fill: Fill | None = None,
    maker: bool = False,
) -> dict[str, Any]:
    """Build an ``executionReport`` event with every field of the venue's payload."""
    now_ms = now_ns // 1_000_000
    status = "NEW" if exec_type == "NEW" else order.status
    last_qty = fill.qty if fill else Decimal(0)
    last_price = fill.price if fill else Decimal(0)
    new = exec_type == "NEW"
    return {
        "e": "executionReport",
        "E": now_ms,
        "s": order.symbol,
        # A cancel's report carries the cancel request's id in c and the order's own id in C.
        "c": order.cancel_client_id if exec_type == "CANCELED" else order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force,
        "q": d8(order.orig_qty),
        "p": d8(order.price),
        "P": d8(order.stop_price),
        "F": "0.00000000",
        "g": -1,
        "C": order.client_order_id if exec_type == "CANCELED" else "",
        "x": exec_type,
        "X": status,
        "r": "NONE",
        "i": order.order_id,
        "l": d8(last_qty),
        "z": d8(Decimal(0) if new else order.executed_qty),
        "L": d8(last_price),
        "n": d8(fill.commission) if fill else "0",
        "N": fill.commission_asset if fill else None,
        "T": now_ms,
        "t": fill.trade_id if fill else -1,
        "I": execution_id,
        "w": ((order.is_open and order.type != "MARKET") or new) and order.working,
        "m": maker,
        "M": fill is not None,
        "O": order.time_ms,
        "Z": d8(Decimal(0) if new else order.cum_quote),
        "Y": d8((last_price * last_qty).quantize(EIGHT)),
        "Q": d8(order.orig_quote_qty),
        "W": order.time_ms,
        "V": "NONE",
    }


def account_position(
    free: dict[str, Decimal], locked: dict[str, Decimal], assets: list[str], now_ns: int
) -> dict[str, Any]:
    """Build an ``outboundAccountPosition`` event for ``assets``."""
    now_ms = now_ns // 1_000_000
    return {
        "e": "outboundAccountPosition",
        "E": now_ms,
        "u": now_ms,
        "B": [
            {
                "a": a,
                "f": d8(free.get(a, Decimal(0))),
                "l": d8(locked.get(a, Decimal(0))),
            }
            for a in assets
        ],
    }


def account_result(
    commission_rate: Decimal, free: dict[str, Decimal], locked: dict[str, Decimal], now_ns: int
) -> dict[str, Any]:
    """Return the ``account.status`` / ``GET /api/v3/account`` result."""
    rate = d8(commission_rate)
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": rate,
            "taker": rate,
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now_ns // 1_000_000,
        "accountType": "SPOT",
        "balances": [
            {
                "asset": a,
                "free": d8(free.get(a, Decimal(0))),
                "locked": d8(locked.get(a, Decimal(0))),
            }
            for a in sorted(set(free) | set(locked))
        ],
        "permissions": ["SPOT"],
        "uid": 354937868,
    }
