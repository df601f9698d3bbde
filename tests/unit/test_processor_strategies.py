"""ThresholdCross: level, hysteresis band, first state silent, buy/sell on crossings, state."""

from __future__ import annotations

import msgpack

from tests.builders import build_trade
from tickpipe.common.schema import Trade
from tickpipe.processor.strategies import SignalSpec, Strategy, ThresholdCross


def trade(price: str, symbol: str = "BTCUSDT", tid: int = 1) -> Trade:
    return build_trade(symbol=symbol, trade_id=str(tid), price=price, ts_event=0, ts_recv=0)


def sides(strategy: Strategy, prices: list[str], symbol: str = "BTCUSDT") -> list[str]:
    """Feed prices; return one entry per trade: '' or the sides of the signals it caused."""
    out = []
    for n, price in enumerate(prices):
        specs = strategy.on_trade(trade(price, symbol, n), ts_now=0)
        out.append(",".join(s.side for s in specs))
    return out


def test_is_a_strategy_with_a_stable_name() -> None:
    strategy = ThresholdCross({}, hysteresis_bps="5", order_qty="0.001")
    assert isinstance(strategy, Strategy)
    assert strategy.name == "threshold_cross"


def test_band_decides_the_state_and_crossings_emit_signals() -> None:
    # level 100, 100 bps = 1 %: above at >= 101, below at <= 99.
    strategy = ThresholdCross({"BTCUSDT": "100"}, hysteresis_bps="100", order_qty="0.5")
    prices = ["100.5", "101", "100.2", "99.01", "99", "100.99", "98", "101.00", "150", "99.0"]
    assert sides(strategy, prices) == ["", "", "", "", "sell", "", "", "buy", "", "sell"]


def test_the_first_state_emits_nothing_even_far_from_the_level() -> None:
    strategy = ThresholdCross({"BTCUSDT": "100"}, hysteresis_bps="5", order_qty="1")
    assert sides(strategy, ["50", "40"]) == ["", ""]
    assert sides(strategy, ["200"]) == ["buy"]


def test_signal_spec_carries_qty_price_and_a_readable_reason() -> None:
    strategy = ThresholdCross({"BTCUSDT": "100"}, hysteresis_bps="10", order_qty="0.001")
    strategy.on_trade(trade("90"), ts_now=0)
    (spec,) = strategy.on_trade(trade("100.10000"), ts_now=0)
    assert spec == SignalSpec(
        symbol="BTCUSDT",
        side="buy",
        qty="0.001",
        price="100.10000",
        reason="price 100.10000 crossed above 100 (+10 bps)",
        action="place",
    )


def test_without_a_configured_level_the_first_price_is_the_level() -> None:
    strategy = ThresholdCross({}, hysteresis_bps="100", order_qty="1")
    assert sides(strategy, ["200", "201.5", "202", "197", "198", "203"]) == [
        "",
        "",
        "",
        "sell",
        "",
        "buy",
    ]
    assert strategy.to_state()["BTCUSDT"][0] == "200"


def test_symbols_are_independent() -> None:
    strategy = ThresholdCross(
        {"BTCUSDT": "100", "ETHUSDT": "10"}, hysteresis_bps="0", order_qty="1"
    )
    assert sides(strategy, ["90"], "BTCUSDT") == [""]
    assert sides(strategy, ["11"], "ETHUSDT") == [""]
    assert sides(strategy, ["110"], "BTCUSDT") == ["buy"]
    assert sides(strategy, ["9"], "ETHUSDT") == ["sell"]


def test_state_round_trips_and_resumes_mid_crossing() -> None:
    strategy = ThresholdCross({}, hysteresis_bps="50", order_qty="1")
    sides(strategy, ["1000", "1010"])  # level 1000, now above
    blob = msgpack.packb(strategy.to_state())
    restored = ThresholdCross({}, hysteresis_bps="50", order_qty="1")
    restored.load_state(msgpack.unpackb(blob))
    assert sides(restored, ["996", "995"]) == ["", "sell"]


def test_a_changed_configured_level_resets_the_symbol() -> None:
    old = ThresholdCross({"BTCUSDT": "100"}, hysteresis_bps="0", order_qty="1")
    sides(old, ["120"])
    new = ThresholdCross({"BTCUSDT": "200"}, hysteresis_bps="0", order_qty="1")
    new.load_state(old.to_state())
    # Under the new level 120 is below: that is a first state again, not a sell.
    assert sides(new, ["120", "210"]) == ["", "buy"]
