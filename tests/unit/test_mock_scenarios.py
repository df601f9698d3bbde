"""Unit tests of the seeded market scenarios (pure: time is passed in)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tickpipe.mock_ws.market import MarketSim, SimTrade
from tickpipe.mock_ws.scenarios import ScenarioError, parse_scenarios, regime_from

S = 1_000_000_000


def run(specs: list[dict[str, Any]], seconds: float, rate: float = 50.0) -> list[SimTrade]:
    market = MarketSim(["BTCUSDT", "ETHUSDT"], seed=7, trades_per_s=rate)
    market.trades_due(0)
    for spec in specs:
        market.schedule(spec, 0)
    out: list[SimTrade] = []
    for step in range(1, int(seconds * 10) + 1):
        out.extend(market.trades_due(step * S // 10))
    return out


def price_near(trades: list[SimTrade], symbol: str, t_ms: int) -> Decimal:
    before = [t for t in trades if t.symbol == symbol and t.trade_time_ms <= t_ms]
    return Decimal(before[-1].price)


def test_parse_text_and_json() -> None:
    assert parse_scenarios("crash:BTCUSDT@10+30, burst@0+5,calm") == [
        {"name": "crash", "symbol": "BTCUSDT", "at": 10.0, "duration": 30.0},
        {"name": "burst", "at": 0.0, "duration": 5.0},
        {"name": "calm"},
    ]
    assert parse_scenarios('{"name": "spike", "pct": -3}') == [{"name": "spike", "pct": -3}]
    for bad in ("crash@x", "[1]", "{nope"):
        with pytest.raises(ScenarioError):
            parse_scenarios(bad)
    for spec in (
        {"name": "boom"},
        {"name": "halt", "symbol": "XRPUSDT"},
        {"name": "burst", "factor": 0},
    ):
        with pytest.raises(ScenarioError):
            regime_from(spec, 0, ["BTCUSDT"])


def test_crash_moves_one_symbol_and_stays() -> None:
    trades = run([{"name": "crash", "symbol": "BTCUSDT", "duration": 5, "pct": 10}], 12)
    start = Decimal("61800")
    assert abs(price_near(trades, "BTCUSDT", 11_000) / start - Decimal("0.9")) < Decimal("0.01")
    assert abs(price_near(trades, "ETHUSDT", 11_000) / Decimal("2680") - 1) < Decimal("0.01")


def test_spike_jumps_then_decays_and_trend_drifts() -> None:
    trades = run([{"name": "spike", "duration": 4, "pct": 5}], 8)
    start = Decimal("61800")
    assert price_near(trades, "BTCUSDT", 500) / start > Decimal("1.035")
    assert abs(price_near(trades, "BTCUSDT", 7900) / start - 1) < Decimal("0.01")
    trend = run([{"name": "trend", "duration": 4, "pct": 3}], 6)
    assert abs(price_near(trend, "BTCUSDT", 5900) / start - Decimal("1.03")) < Decimal("0.01")


def test_halt_and_burst_change_the_trade_schedule() -> None:
    halted = run([{"name": "halt", "symbol": "BTCUSDT", "at": 1, "duration": 2}], 4)
    btc = [t.trade_time_ms for t in halted if t.symbol == "BTCUSDT"]
    assert not [t for t in btc if 1000 <= t < 3000] and [t for t in btc if t >= 3000]
    assert [t for t in halted if t.symbol == "ETHUSDT" and 1000 <= t.trade_time_ms < 3000]
    ids = [t.trade_id for t in halted if t.symbol == "BTCUSDT"]
    assert ids == list(range(1, len(ids) + 1))
    burst = run([{"name": "burst", "symbol": "ETHUSDT", "at": 1, "duration": 1, "factor": 10}], 3)
    eth = [t.trade_time_ms for t in burst if t.symbol == "ETHUSDT"]
    inside = len([t for t in eth if 1000 <= t < 2000])
    outside = len([t for t in eth if t < 1000 or 2000 <= t < 3000]) / 2
    assert inside > 5 * outside


def test_scenarios_are_reproducible() -> None:
    specs = [{"name": "crash", "at": 1, "duration": 2}, {"name": "burst", "duration": 1}]
    assert run(specs, 4) == run(specs, 4)
