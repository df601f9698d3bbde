"""Answer Binance's account-history queries and test orders from the matching engine (pure).

``allOrders`` and ``myTrades`` (REST ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades`` and the
WebSocket API methods of the same names) follow the Spot API's "Account endpoints" section:
``symbol`` is mandatory; ``orderId`` (allOrders) or ``fromId`` (myTrades) pages forward from an
id; otherwise the most recent entries are returned; ``startTime``/``endTime`` bound the time
and may not span more than 24 hours (``-1127``); ``limit`` defaults to 500, at most 1000;
entries come oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tickpipe.mock_ws.matching import MatchingEngine
from tickpipe.mock_ws.order_model import EIGHT, Order, OrderRejected, d8
from tickpipe.mock_ws.order_rules import int_param, symbol_param

__all__ = ["all_orders", "my_trades", "open_orders", "order_status", "test_order_result"]

DAY_MS = 86_400_000
_LONG = (1 << 63) - 1  # the venue's ids and times are signed 64-bit


def _window(params: Mapping[str, Any]) -> tuple[int | None, int | None, int]:
    start = int_param(params, "startTime", None, 0, _LONG)
    end = int_param(params, "endTime", None, 0, _LONG)
    if start is not None and end is not None and end - start > DAY_MS:
        raise OrderRejected(-1127, "More than 24 hours between startTime and endTime.")
    return start, end, int_param(params, "limit", 500, 1, 1000) or 500


def _pick(
    rows: list[tuple[int, int, Any]],
    from_id: int | None,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[Any]:
    """Pick from ``(id, time_ms, row)`` sorted by id: from an id, a time window, or the newest."""
    if from_id is not None:
        return [r for i, t, r in rows if i >= from_id][:limit]
    if start is not None:
        return [r for _, t, r in rows if start <= t and (end is None or t <= end)][:limit]
    if end is not None:
        return [r for _, t, r in rows if t <= end][-limit:]
    return [r for _, _, r in rows][-limit:]


def all_orders(
    orders: Iterable[Order], params: Mapping[str, Any], listed: Iterable[str]
) -> list[dict[str, Any]]:
    """Answer ``allOrders``: a symbol's orders, open or closed, in the order-query shape."""
    symbol = symbol_param(params, set(listed))
    from_id = int_param(params, "orderId", None, 0, _LONG)
    start, end, limit = _window(params)
    rows = sorted(
        ((o.order_id, o.time_ms, o) for o in orders if o.symbol == symbol), key=lambda r: r[0]
    )
    return [o.query_result() for o in _pick(rows, from_id, start, end, limit)]


def my_trades(
    orders: Iterable[Order], params: Mapping[str, Any], listed: Iterable[str]
) -> list[dict[str, Any]]:
    """Answer ``myTrades``: the account's fills of a symbol (of one ``orderId`` if given)."""
    symbol = symbol_param(params, set(listed))
    order_id = int_param(params, "orderId", None, 0, _LONG)
    from_id = int_param(params, "fromId", None, 0, _LONG)
    start, end, limit = _window(params)
    if from_id is not None and (start is not None or end is not None):
        raise OrderRejected(-1128, "Combination of optional parameters invalid.")
    if order_id is not None and (start is not None or end is not None):
        raise OrderRejected(-1128, "Combination of optional parameters invalid.")
    rows = []
    for order in orders:
        if order.symbol != symbol or order_id not in (None, order.order_id):
            continue
        for fill in order.fills:
            rows.append((fill.trade_id, fill.time_ms, _trade(order, fill)))
    rows.sort(key=lambda r: r[0])
    return _pick(rows, from_id, start, end, limit)


def _trade(order: Order, fill: Any) -> dict[str, Any]:
    quote = (Decimal(fill.price) * Decimal(fill.qty)).quantize(EIGHT)
    return {
        "symbol": order.symbol,
        "id": fill.trade_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "price": d8(fill.price),
        "qty": d8(fill.qty),
        "quoteQty": d8(quote),
        "commission": d8(fill.commission),
        "commissionAsset": fill.commission_asset,
        "time": fill.time_ms,
        "isBuyer": order.side == "BUY",
        "isMaker": fill.maker,
        "isBestMatch": True,
    }


def order_status(engine: MatchingEngine, params: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a query of one order (``GET /api/v3/order``, ``order.status``).

    ``symbol`` is mandatory and must be listed; the order is found by ``orderId`` or
    ``origClientOrderId`` and must be of that symbol (-2013 otherwise).
    """
    symbol = symbol_param(params, engine.market.symbols)
    order = engine.find(
        order_id=params.get("orderId"), client_order_id=params.get("origClientOrderId")
    )
    if order.symbol != symbol:
        raise OrderRejected(-2013, "Order does not exist.")
    return order.query_result()


def open_orders(engine: MatchingEngine, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Answer the open orders of one listed ``symbol``, or of every symbol without one."""
    symbol = str(params.get("symbol") or "").upper() or None
    if symbol is not None and not engine.market.has_symbol(symbol):
        raise OrderRejected(-1121, "Invalid symbol.")
    return [o.query_result() for o in engine.open_orders(symbol)]


def test_order_result(
    engine: MatchingEngine, params: Mapping[str, Any], now_ns: int
) -> dict[str, Any]:
    """Answer ``order.test``: ``{}``, or the commission rates with ``computeCommissionRates``.

    The order is checked as :meth:`MatchingEngine.place` would check it and never placed.
    """
    engine.check(params, now_ns)
    if str(params.get("computeCommissionRates", "")).lower() != "true":
        return {}
    rate = d8(engine.commission_rate)
    zero = "0.00000000"
    return {
        "standardCommissionForOrder": {"maker": rate, "taker": rate},
        "specialCommissionForOrder": {"maker": zero, "taker": zero},
        "taxCommissionForOrder": {"maker": zero, "taker": zero},
        "discount": {
            "enabledForAccount": False,
            "enabledForSymbol": False,
            "discountAsset": "BNB",
            "discount": zero,
        },
    }
