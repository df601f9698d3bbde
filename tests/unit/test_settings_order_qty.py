"""TICKPIPE_ORDER_QTY: one size for all, or per symbol; defaults clear the venue's filters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.test_processor_strategies import trade
from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import Settings, load_settings
from tickpipe.mock_ws.market import START_PRICES
from tickpipe.mock_ws.order_rules import MIN_NOTIONAL
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import ThresholdCross
from tickpipe.trader.owner import default_limits


def _load(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({f"TICKPIPE_{k}": v for k, v in env.items()}, dotenv_path=None)


def test_default_sizes_clear_the_mock_minimum_notional_with_margin() -> None:
    settings = _load()
    for symbol in settings.symbols:
        notional = Decimal(settings.order_qty_for(symbol)) * Decimal(START_PRICES[symbol])
        print(f"{symbol}: {settings.order_qty_for(symbol)} x {START_PRICES[symbol]} = {notional}")
        assert notional >= 4 * MIN_NOTIONAL, symbol


def test_ibkr_takes_whole_shares_unless_the_user_sized_the_orders() -> None:
    ibkr = _load(VENUE="ibkr", SYMBOLS="AAPL,MSFT")
    assert ibkr.order_qty_for("AAPL") == ibkr.order_qty_for("MSFT") == "1"
    assert ibkr.max_position == "100"  # a position of shares, not of bitcoin
    both = _load(VENUES="binance,ibkr", SYMBOLS="BTCUSDT,ibkr:AAPL")
    assert both.for_venue("ibkr").order_qty_for("AAPL") == "1"
    assert both.for_venue("binance").order_qty_for("BTCUSDT") == "0.001"
    first = _load(VENUES="ibkr,binance", SYMBOLS="AAPL,binance:BTCUSDT")
    assert (first.order_qty_for("AAPL"), first.max_position) == ("1", "100")
    binance = first.for_venue("binance")
    assert (binance.order_qty_for("BTCUSDT"), binance.max_position) == ("0.001", "1")
    sized = _load(VENUE="ibkr", SYMBOLS="AAPL", ORDER_QTY="5", MAX_POSITION="7")
    assert (sized.order_qty_for("AAPL"), sized.max_position) == ("5", "7")
    assert sized.for_venue("ibkr").max_position == "7"
    # settings built in code keep what the code set; only the defaults follow the venue
    coded = Settings(order_qty="5", max_position="7").for_venue("ibkr")
    assert (coded.order_qty_for("AAPL"), coded.max_position) == ("5", "7")
    plain = Settings().for_venue("ibkr")
    assert (plain.order_qty_for("AAPL"), plain.max_position) == ("1", "100")


def test_per_symbol_sizes_and_a_bare_value_for_the_others() -> None:
    settings = _load(ORDER_QTY="btcusdt=0.002, ETHUSDT=0.05", SYMBOLS="BTCUSDT,ETHUSDT,BNBUSDT")
    assert settings.order_qty_for("BTCUSDT") == "0.002"
    assert settings.order_qty_for("ETHUSDT") == "0.05"
    assert settings.order_qty_for("BNBUSDT") == "0.001"  # no bare value: the fallback
    bare = _load(ORDER_QTY="0.02")
    assert bare.order_qty_for("BTCUSDT") == bare.order_qty_for("ETHUSDT") == "0.02"
    mixed = _load(ORDER_QTY="0.3;ETHUSDT=0.04")
    assert (mixed.order_qty_for("BTCUSDT"), mixed.order_qty_for("ETHUSDT")) == ("0.3", "0.04")


def test_the_threshold_strategy_orders_each_symbol_its_own_size() -> None:
    settings = _load(ORDER_QTY="BTCUSDT=0.002,ETHUSDT=0.03", HYSTERESIS_BPS="0")
    strategy = next(s for s in build_strategies(settings) if isinstance(s, ThresholdCross))
    sizes = {}
    for symbol, prices in (("BTCUSDT", ["100", "101", "99"]), ("ETHUSDT", ["10", "11", "9"])):
        for n, price in enumerate(prices):
            for spec in strategy.on_trade(trade(price, symbol, n), ts_now=0):
                sizes[symbol] = spec.qty
    assert sizes == {"BTCUSDT": "0.002", "ETHUSDT": "0.03"}
    # The risk check's per-order cap follows the largest size.
    assert default_limits(settings).max_order_qty == Decimal("0.3")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "is not a number"),
        ("0", "must be positive"),
        ("ETHUSDT=-1", "non-negative"),
        ("=0.1", "SYMBOL=QTY"),
        ("ETHUSDT=0.1,ethusdt=0.2", "ETHUSDT is given twice"),
        ("0.1,0.2", "every symbol is given twice"),
        (",", "give QTY or SYMBOL=QTY"),
        ("DOGEUSDT=5", r"names \['DOGEUSDT'\] which are not in TICKPIPE_SYMBOLS"),
    ],
)
def test_a_bad_size_is_one_clear_error(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as caught:
        _load(ORDER_QTY=value)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("TICKPIPE_ORDER_QTY")
