"""Unit tests of the trader's market view and market-priced risk (pure: no I/O, no clock)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tickpipe.trader.market import MarketPrice, MarketView, market_refusal, order_value_price

S = 1_000_000_000
NOW = 1_700_000_000 * S


def _refusal(signal_price: str, market: MarketPrice | None, *, now: int = NOW) -> str | None:
    return market_refusal("BTCUSDT", signal_price, market, now_ns=now, max_age_ns=10 * S,
                          band_bps=Decimal(100))  # fmt: skip


def test_the_view_keeps_the_latest_trade_and_quote_and_prices_each_side() -> None:
    view = MarketView()
    assert view.price("BTCUSDT", "buy") is None
    view.see_trade("BTCUSDT", "61800", NOW - 2 * S)
    view.see_trade("BTCUSDT", "not a price", NOW)  # ignored
    assert view.price("BTCUSDT", "buy") == MarketPrice(Decimal(61800), NOW - 2 * S, "trade")
    view.see_quote("BTCUSDT", "61790", "61810", NOW - S)  # newer than the trade
    assert view.price("BTCUSDT", "buy") == MarketPrice(Decimal(61810), NOW - S, "quote")
    assert view.price("BTCUSDT", "sell") == MarketPrice(Decimal(61790), NOW - S, "quote")
    view.see_trade("BTCUSDT", "61805", NOW)
    assert view.price("BTCUSDT", "sell").price == Decimal(61805)  # type: ignore[union-attr]
    view.see_quote("ETHUSDT", "0", "3000", NOW)  # one side only
    assert view.price("ETHUSDT", "sell").price == Decimal(3000)  # type: ignore[union-attr]
    assert view.last_trades() == {"BTCUSDT": Decimal(61805)}


@pytest.mark.parametrize(
    ("signal_price", "refused"),
    [("61800", False), ("62400", False), ("61200", False), ("62500", True), ("1", True),
     ("0", True), ("-5", True), ("", False)],
)  # fmt: skip
def test_the_band_refuses_prices_far_from_the_market(signal_price: str, refused: bool) -> None:
    market = MarketPrice(Decimal(61800), NOW, "trade")
    reason = _refusal(signal_price, market)
    assert (reason is not None) == refused, reason
    if refused:
        assert reason is not None and reason.startswith(f"price band: signal price {signal_price}")


def test_no_market_or_a_stale_one_is_refused_with_its_age() -> None:
    assert _refusal("61800", None) == "no market price for BTCUSDT: no trade or quote seen"
    old = MarketPrice(Decimal(61800), NOW - 11 * S, "quote")
    assert _refusal("61800", old) == (
        "no market price for BTCUSDT: the last one is 11.0 s old (limit 10 s)"
    )
    assert _refusal("61800", old, now=NOW - S) is None


def test_orders_are_valued_at_the_market_or_a_higher_limit_price() -> None:
    market = MarketPrice(Decimal(61800), NOW, "trade")
    assert order_value_price(market, "MARKET", None) == Decimal(61800)
    assert order_value_price(market, "LIMIT", "61000") == Decimal(61800)
    assert order_value_price(market, "LIMIT", "62000") == Decimal(62000)
