"""ThresholdCross with a take profit: a MARKET entry, then a resting LIMIT on the other side."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.test_processor_strategies import trade
from tickpipe.common.errors import ConfigError
from tickpipe.common.order_spec import order_problem
from tickpipe.common.settings import load_settings
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import ThresholdCross


def _strategy(**env: str) -> ThresholdCross:
    settings = load_settings(
        {"TICKPIPE_HYSTERESIS_BPS": "0", **env, "TICKPIPE_THRESHOLDS": "BTCUSDT=100"},
        dotenv_path=None,
    )
    return next(s for s in build_strategies(settings) if isinstance(s, ThresholdCross))


def test_each_crossing_is_a_market_entry_and_a_resting_limit_take_profit() -> None:
    strategy = _strategy(TICKPIPE_STRATEGY_THRESHOLD_CROSS_TAKE_PROFIT_BPS="70")
    specs = [strategy.on_trade(trade(p, tid=n), ts_now=0) for n, p in enumerate(
        ["99.00", "101.00", "98.00"])]  # fmt: skip
    assert specs[0] == []  # the first state reached emits nothing
    (buy, sell_tp), (sell, buy_tp) = specs[1], specs[2]
    assert (buy.side, buy.order_type, buy.action) == ("buy", "", "place")  # the deployment's
    assert (sell_tp.side, sell_tp.order_type, sell_tp.time_in_force) == ("sell", "LIMIT", "GTC")
    assert Decimal(sell_tp.price) == Decimal("101.71") and sell_tp.qty == buy.qty == "0.001"
    assert (sell.side, buy_tp.side, buy_tp.order_type) == ("sell", "buy", "LIMIT")
    assert Decimal(buy_tp.price) == Decimal("97.31")  # 98.00 x 0.993, the crossing's decimals
    for spec in (sell_tp, buy_tp):
        assert (
            order_problem(spec.order_type, spec.time_in_force, spec.post_only, spec.price) is None
        )
        assert "take profit 70 bps" in spec.reason


def test_without_a_take_profit_a_crossing_is_one_order() -> None:
    strategy = _strategy()
    out = [strategy.on_trade(trade(p, tid=n), ts_now=0) for n, p in enumerate(["99", "101"])]
    assert [len(specs) for specs in out] == [0, 1]


@pytest.mark.parametrize("value", ["-1", "10000", "x"])
def test_a_bad_take_profit_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="TICKPIPE_STRATEGY_THRESHOLD_CROSS_TAKE_PROFIT_BPS"):
        _strategy(TICKPIPE_STRATEGY_THRESHOLD_CROSS_TAKE_PROFIT_BPS=value)
