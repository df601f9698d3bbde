"""ThresholdCross with a passive order: a MARKET entry, then a resting LIMIT behind the price."""

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


def test_each_crossing_is_a_market_entry_and_a_passive_limit_behind_it() -> None:
    strategy = _strategy(TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS="40")
    specs = [strategy.on_trade(trade(p, tid=n), ts_now=0) for n, p in enumerate(
        ["99.00", "101.00", "98.00"])]  # fmt: skip
    assert specs[0] == []  # the first state reached emits nothing
    (buy, bid), (sell, offer) = specs[1], specs[2]
    assert (buy.side, buy.order_type, buy.action) == ("buy", "", "place")  # the deployment's
    assert (bid.side, bid.order_type, bid.time_in_force) == ("buy", "LIMIT", "GTC")
    assert Decimal(bid.price) == Decimal("100.59") and bid.qty == buy.qty == "0.001"
    assert (sell.side, offer.side, offer.order_type) == ("sell", "sell", "LIMIT")
    assert Decimal(offer.price) == Decimal("98.40")  # 98.392 rounded up: away from the market
    for spec in (bid, offer):
        assert (
            order_problem(spec.order_type, spec.time_in_force, spec.post_only, spec.price) is None
        )
        assert "passive" in spec.reason and "40 bps" in spec.reason


def test_without_a_take_profit_a_crossing_is_one_order() -> None:
    strategy = _strategy()
    out = [strategy.on_trade(trade(p, tid=n), ts_now=0) for n, p in enumerate(["99", "101"])]
    assert [len(specs) for specs in out] == [0, 1]


@pytest.mark.parametrize("value", ["-1", "10000", "x"])
def test_a_bad_take_profit_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS"):
        _strategy(TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS=value)
