"""Render Alpaca positions and the account from fills and current prices (pure, no I/O).

A position is signed (short below zero) with the average entry price of the side it is on;
values use the simulated market's last price. The account has no margin: buying power is cash
less what open buy orders reserve, equity is cash plus the positions' market value.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickpipe.mock_ws.alpaca.marketdata import is_crypto
from tickpipe.mock_ws.alpaca.orders import decimal_text
from tickpipe.mock_ws.market import MarketSim

__all__ = ["Position", "account_json", "asset_id", "positions_json"]


def asset_id(symbol: str) -> str:
    """Return the stable asset id of ``symbol``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-asset:{symbol}"))


@dataclass
class Position:
    """A signed position and its average entry price."""

    symbol: str
    qty: Decimal = Decimal(0)
    avg_entry: Decimal = Decimal(0)

    def apply(self, side: str, qty: Decimal, price: Decimal) -> None:
        """Add a fill of ``qty`` at ``price`` on ``side``."""
        signed = qty if side == "buy" else -qty
        new_qty = self.qty + signed
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            self.avg_entry = (self.avg_entry * abs(self.qty) + price * qty) / abs(new_qty)
        elif new_qty != 0 and (new_qty > 0) != (self.qty > 0):
            self.avg_entry = price  # flipped through zero
        self.qty = new_qty


def positions_json(positions: Iterable[Position], market: MarketSim) -> list[dict[str, Any]]:
    """Return ``GET /v2/positions``: every non-flat position valued at the current price."""
    out = []
    for pos in positions:
        if pos.qty == 0:
            continue
        price = Decimal(market.last_price(pos.symbol))
        market_value = pos.qty * price
        cost = pos.qty * pos.avg_entry
        pl = market_value - cost
        plpc = pl / abs(cost) if cost else Decimal(0)
        crypto = is_crypto(pos.symbol)
        out.append(
            {
                "asset_id": asset_id(pos.symbol),
                "symbol": pos.symbol.replace("/", ""),
                "exchange": "CRYPTO" if crypto else "NASDAQ",
                "asset_class": "crypto" if crypto else "us_equity",
                "asset_marginable": not crypto,
                "qty": decimal_text(pos.qty),
                "qty_available": decimal_text(pos.qty),
                "avg_entry_price": _money(pos.avg_entry),
                "side": "long" if pos.qty > 0 else "short",
                "market_value": _money(market_value),
                "cost_basis": _money(cost),
                "unrealized_pl": _money(pl),
                "unrealized_plpc": _money(plpc),
                "unrealized_intraday_pl": _money(pl),
                "unrealized_intraday_plpc": _money(plpc),
                "current_price": _money(price),
                "lastday_price": _money(Decimal(market.start_price(pos.symbol))),
                "change_today": "0",
            }
        )
    return out


def account_json(
    account_id: str,
    cash: Decimal,
    buying_power: Decimal,
    positions: Iterable[Position],
    market: MarketSim,
) -> dict[str, Any]:
    """Return ``GET /v2/account`` with cash, buying power and equity from the fills."""
    long_value = short_value = Decimal(0)
    for pos in positions:
        value = pos.qty * Decimal(market.last_price(pos.symbol))
        if value > 0:
            long_value += value
        else:
            short_value += value
    equity = cash + long_value + short_value
    return {
        "id": account_id,
        "account_number": "PA" + account_id.replace("-", "")[:10].upper(),
        "status": "ACTIVE",
        "crypto_status": "ACTIVE",
        "currency": "USD",
        "buying_power": _money(buying_power),
        "regt_buying_power": _money(buying_power),
        "daytrading_buying_power": "0",
        "non_marginable_buying_power": _money(buying_power),
        "options_buying_power": _money(buying_power),
        "cash": _money(cash),
        "accrued_fees": "0",
        "pending_transfer_in": "0",
        "portfolio_value": _money(equity),
        "equity": _money(equity),
        "last_equity": _money(equity),
        "long_market_value": _money(long_value),
        "short_market_value": _money(short_value),
        "initial_margin": "0",
        "maintenance_margin": "0",
        "last_maintenance_margin": "0",
        "sma": "0",
        "multiplier": "1",
        "pattern_day_trader": False,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": True,
        "daytrade_count": 0,
        "created_at": "2024-01-02T14:30:00Z",
    }


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.000000001')).normalize():f}"
