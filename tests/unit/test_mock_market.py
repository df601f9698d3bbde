"""Unit tests of the mock exchange's seeded market simulation."""

from __future__ import annotations

import itertools
import re

import pytest

from mock_ws.market import MarketSim, SimTrade, format_units
from venues.binance.wire import parse_trade

S = 1_000_000_000
DECIMAL_8 = re.compile(r"^\d+\.\d{8}$")


def run(sim: MarketSim, steps: int, step_ns: int = S // 10, start_ns: int = 1_700_000_000 * S):
    out: list[SimTrade] = []
    for i in range(steps):
        out.extend(sim.trades_due(start_ns + i * step_ns))
    return out


def test_same_seed_gives_same_trades() -> None:
    a = run(MarketSim(["BTCUSDT", "ETHUSDT"], seed=7, trades_per_s=20), 200)
    b = run(MarketSim(["BTCUSDT", "ETHUSDT"], seed=7, trades_per_s=20), 200)
    assert len(a) > 500
    assert a == b


def test_different_seed_gives_different_trades() -> None:
    a = run(MarketSim(["BTCUSDT"], seed=1, trades_per_s=20), 100)
    b = run(MarketSim(["BTCUSDT"], seed=2, trades_per_s=20), 100)
    assert [t.price for t in a] != [t.price for t in b]


def test_adding_a_symbol_does_not_change_another_symbols_trades() -> None:
    a = run(MarketSim(["BTCUSDT"], seed=3, trades_per_s=20), 100)
    b = run(MarketSim(["BTCUSDT", "SOLUSDT"], seed=3, trades_per_s=20), 100)
    assert a == [t for t in b if t.symbol == "BTCUSDT"]


def test_first_call_only_starts_the_clock() -> None:
    sim = MarketSim(["BTCUSDT"], seed=1, trades_per_s=20)
    assert sim.trades_due(5 * S) == []
    assert sim.last_price("BTCUSDT") == "61800.00000000"


def test_start_prices() -> None:
    sim = MarketSim(["BTCUSDT", "ETHUSDT", "SOLUSDT"], seed=1, trades_per_s=1)
    assert sim.last_price("BTCUSDT") == "61800.00000000"
    assert sim.last_price("ethusdt") == "2680.00000000"
    assert sim.last_price("SOLUSDT") == "100.00000000"
    with pytest.raises(KeyError):
        sim.last_price("DOGEUSDT")


def test_rate_is_roughly_trades_per_second() -> None:
    sim = MarketSim(["BTCUSDT"], seed=5, trades_per_s=20)
    trades = run(sim, 600)  # 60 s
    assert 1000 < len(trades) < 1400


def test_price_mean_reverts_and_keeps_crossing_the_start() -> None:
    sim = MarketSim(["BTCUSDT"], seed=11, trades_per_s=20)
    trades = run(sim, 6000)  # 10 minutes, ~12000 trades
    prices = [float(t.price) for t in trades]
    assert max(abs(p / 61800 - 1) for p in prices) < 0.01  # within 1 %
    above = [p > 61800 for p in prices]
    crossings = sum(1 for x, y in itertools.pairwise(above) if x != y)
    assert crossings > 50
    assert len({t.price for t in trades}) > 100  # it really moves


def test_prices_and_quantities_are_binance_decimal_strings_on_the_tick() -> None:
    trades = run(MarketSim(["ETHUSDT"], seed=1, trades_per_s=50), 100)
    for t in trades:
        assert DECIMAL_8.match(t.price) and DECIMAL_8.match(t.qty)
        assert t.price.endswith("000000")  # 0.01 tick
        assert float(t.qty) > 0


def test_trade_ids_are_contiguous_per_symbol_from_one_and_times_ordered() -> None:
    sim = MarketSim(["BTCUSDT", "ETHUSDT"], seed=9, trades_per_s=30)
    trades = run(sim, 300)
    sim.record_fill("BTCUSDT", "0.5", False, 1_700_000_000 * S + 300 * S // 10)
    trades += run(sim, 50, start_ns=1_700_000_031 * S)
    for symbol in ("BTCUSDT", "ETHUSDT"):
        mine = [t for t in trades if t.symbol == symbol]
        assert [t.trade_id for t in mine] == list(range(1, len(mine) + 1))
        times = [t.trade_time_ms for t in mine]
        assert times == sorted(times)
    assert sim.trades_generated()["BTCUSDT"] == sum(t.symbol == "BTCUSDT" for t in trades)


def test_record_fill_trades_at_the_current_price_with_the_next_id() -> None:
    sim = MarketSim(["BTCUSDT"], seed=4, trades_per_s=20)
    before = run(sim, 20)
    fill = sim.record_fill("BTCUSDT", "0.001", True, 1_700_000_000 * S + 19 * S // 10)
    assert fill.trade_id == before[-1].trade_id + 1
    assert fill.price == before[-1].price == sim.last_price("BTCUSDT")
    assert fill.qty == "0.00100000"
    assert fill.buyer_is_maker
    assert sim.trades_due(1_700_000_000 * S + 19 * S // 10) == [fill]


def test_a_long_pause_drops_the_backlog_but_keeps_ids_contiguous() -> None:
    sim = MarketSim(["BTCUSDT"], seed=2, trades_per_s=20, max_backlog_s=5)
    sim.trades_due(0)
    burst = sim.trades_due(3600 * S)
    assert len(burst) == 100
    later = sim.trades_due(3601 * S)
    ids = [t.trade_id for t in burst + later]
    assert ids == list(range(1, len(ids) + 1))


def test_payload_parses_as_a_binance_trade() -> None:
    trade = SimTrade("BTCUSDT", 12, "61837.63000000", "0.02000000", 1723161255342, True)
    payload = trade.payload(1723161255343)
    assert payload == {
        "e": "trade",
        "E": 1723161255343,
        "s": "BTCUSDT",
        "t": 12,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1723161255342,
        "m": True,
        "M": True,
    }
    parsed = parse_trade(payload, ts_recv=1)
    assert parsed.side == "sell" and parsed.trade_id == "12"


def test_format_units() -> None:
    assert format_units(6183763, 100) == "61837.63000000"
    assert format_units(1, 100_000) == "0.00001000"
    assert format_units(0, 100) == "0.00000000"
