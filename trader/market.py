"""Keep the trader's own view of the market and price orders from it (pure: no I/O, no clock).

The risk check never trusts the price inside a signal: every order is valued at the market the
trader sees, the latest trade or quote of its symbol read from the partitions' ``trades`` and
``quotes`` streams (:meth:`MarketView.see_trade`, :meth:`MarketView.see_quote`, fed in stream
order; the shell feeds them in the background, so a signal costs no Redis round trip). A buy
is valued at the ask, a sell at the bid, when the quote is newer than the last trade; else at
the last trade's price. A ``LIMIT`` order is valued at the larger of its own price and the
market's.

:func:`market_refusal` says why an order must not go out: no market price for the symbol, or
one older than ``max_age_ns`` (by its receive time), or a signal price further than
``band_bps`` basis points from the market (a made-up or stale decision).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tickpipe.common.units import NS_PER_S
from tickpipe.trader.risk import to_decimal

__all__ = ["MarketPrice", "MarketView", "market_refusal", "order_value_price"]

BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class MarketPrice:
    """A market price of one side of a symbol and when it was received (ns)."""

    price: Decimal
    ts_recv: int
    source: str  # "trade" or "quote"


@dataclass(frozen=True, slots=True)
class _Quote:
    bid: Decimal | None
    ask: Decimal | None
    ts_recv: int


class MarketView:
    """The latest trade and quote per symbol, kept from what the trader reads."""

    def __init__(self) -> None:
        self.trades: dict[str, MarketPrice] = {}
        self.quotes: dict[str, _Quote] = {}

    def see_trade(self, symbol: str, price: str, ts_recv: int) -> None:
        """Keep the trade as ``symbol``'s latest (trades are fed in stream order)."""
        value = to_decimal(price)
        if value is not None and value > 0:
            self.trades[symbol] = MarketPrice(value, ts_recv, "trade")

    def see_quote(self, symbol: str, bid: str, ask: str, ts_recv: int) -> None:
        """Keep the quote as ``symbol``'s latest (quotes are fed in stream order)."""
        bid_value, ask_value = to_decimal(bid), to_decimal(ask)
        bid_value = bid_value if bid_value is not None and bid_value > 0 else None
        ask_value = ask_value if ask_value is not None and ask_value > 0 else None
        if bid_value is not None or ask_value is not None:
            self.quotes[symbol] = _Quote(bid_value, ask_value, ts_recv)

    def price(self, symbol: str, side: str) -> MarketPrice | None:
        """Return the newest price of ``symbol`` for an order of ``side`` (module docstring)."""
        trade = self.trades.get(symbol)
        quote = self.quotes.get(symbol)
        if quote is not None and (trade is None or quote.ts_recv > trade.ts_recv):
            touch = quote.ask if side == "buy" else quote.bid
            touch = touch if touch is not None else quote.bid or quote.ask
            if touch is not None:
                return MarketPrice(touch, quote.ts_recv, "quote")
        return trade

    def last_trades(self) -> dict[str, Decimal]:
        """Return the last trade price of every symbol (the positions' mark prices)."""
        return {symbol: seen.price for symbol, seen in self.trades.items()}


def market_refusal(
    symbol: str,
    signal_price: str,
    market: MarketPrice | None,
    *,
    now_ns: int,
    max_age_ns: int,
    band_bps: Decimal,
    what: str = "signal price",
) -> str | None:
    """Return why an order of ``symbol`` must not be sent at this market, or ``None``.

    ``what`` names the price checked against the band in the reason (a stop order's
    ``stop price`` is checked as well as its limit price).
    """
    if market is None:
        return f"no market price for {symbol}: no trade or quote seen"
    age_ns = now_ns - market.ts_recv
    if age_ns > max_age_ns:
        return (
            f"no market price for {symbol}: the last one is {age_ns / NS_PER_S:.1f} s old "
            f"(limit {max_age_ns / NS_PER_S:g} s)"
        )
    price = to_decimal(signal_price)
    if price is None or signal_price == "":
        return None  # a MARKET signal without a price: valued at the market alone
    distance = abs(price - market.price) / market.price * BPS
    if price <= 0 or distance > band_bps:
        return (
            f"price band: {what} {signal_price} is {distance.quantize(Decimal(1)):f} bps "
            f"from the market {market.price.normalize():f} ({market.source}), "
            f"outside the band of {band_bps.normalize():f} bps"
        )
    return None


def order_value_price(
    market: MarketPrice, order_type: str, limit_price: str | None, stop_price: str = ""
) -> Decimal:
    """Return the price an order is valued at: the market's, or a higher limit price.

    A STOP (or TAKE_PROFIT) order is valued at its stop price and a STOP_LIMIT (or
    TAKE_PROFIT_LIMIT) one at its limit price: that is the price they execute at once
    triggered, not the market's of now.
    """
    if order_type in ("STOP", "TAKE_PROFIT"):
        stop = to_decimal(stop_price)
        return stop if stop is not None and stop > 0 else market.price
    if order_type in ("STOP_LIMIT", "TAKE_PROFIT_LIMIT"):
        limit = to_decimal(limit_price)
        return limit if limit is not None and limit > 0 else market.price
    limit = to_decimal(limit_price) if order_type == "LIMIT" else None
    if limit is not None and limit > market.price:
        return limit
    return market.price
