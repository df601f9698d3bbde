"""RapidMove: a move of x % within y ms cancels a symbol's orders; configured strategies."""

from __future__ import annotations

import msgpack
import pytest

from tests.builders import build_trade
from tests.unit.test_processor_books import hftbacktest
from tickpipe.common.errors import ConfigError
from tickpipe.common.schema import Trade
from tickpipe.common.settings import Settings, load_settings
from tickpipe.common.units import MS
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import RapidMove, SignalSpec, ThresholdCross


def trade(price: str, ts_ms: int, src: str, symbol: str = "BTCUSDT") -> Trade:
    return build_trade(symbol=symbol, price=price, ts_event=ts_ms * MS, ts_recv=0, src=src)


def feed(
    strategy: RapidMove, ticks: list[tuple[str, int]], symbol: str = "BTCUSDT"
) -> list[list[SignalSpec]]:
    return [
        strategy.on_trade(trade(price, ts, f"1-{n}", symbol), ts_now=0)
        for n, (price, ts) in enumerate(ticks)
    ]


def test_a_rise_within_the_window_emits_one_cancel_naming_both_trades() -> None:
    strategy = RapidMove(pct="1", window_ms=1000)
    out = feed(strategy, [("100", 0), ("100.5", 300), ("101", 900), ("101.5", 950)])
    assert [len(specs) for specs in out] == [0, 0, 1, 0]  # once per move
    (spec,) = out[2]
    assert (spec.action, spec.symbol, spec.side, spec.cause) == (
        "cancel",
        "BTCUSDT",
        "buy",
        "1-0,1-2",
    )
    assert "moved up from 100 to 101" in spec.reason


def test_a_fall_counts_from_the_window_high() -> None:
    strategy = RapidMove(pct="1", window_ms=1000)
    out = feed(strategy, [("100", 0), ("102", 100), ("100.98", 500)])
    # After the rise the window starts again at 102, so the fall to 100.98 is a move of its own.
    assert [(s.side, s.cause) for specs in out for s in specs] == [
        ("buy", "1-0,1-1"),
        ("sell", "1-1,1-2"),
    ]
    strategy = RapidMove(pct="1", window_ms=1000)
    out = feed(strategy, [("102", 0), ("101", 100), ("100.98", 500)])
    assert [(s.side, s.cause) for specs in out for s in specs] == [("sell", "1-0,1-2")]


def test_a_slow_move_outside_the_window_is_quiet() -> None:
    strategy = RapidMove(pct="1", window_ms=1000)
    out = feed(strategy, [("100", 0), ("100.6", 800), ("101.1", 1700), ("101.5", 2600)])
    assert all(specs == [] for specs in out)


def test_symbols_are_independent_and_zero_percent_is_off() -> None:
    strategy = RapidMove(pct="1", window_ms=1000)
    feed(strategy, [("100", 0)], "BTCUSDT")
    assert feed(strategy, [("200", 10)], "ETHUSDT") == [[]]
    assert all(s == [] for s in feed(RapidMove(pct="0", window_ms=10), [("1", 0), ("9", 1)]))


def test_state_round_trips_and_resumes_mid_window() -> None:
    ticks = [("100", 0), ("100.4", 200), ("99.9", 400), ("100.95", 700), ("100.2", 900)]
    whole = feed(RapidMove(pct="1", window_ms=1000), ticks)
    first = RapidMove(pct="1", window_ms=1000)
    head = feed(first, ticks[:3])
    second = RapidMove(pct="1", window_ms=1000)
    second.load_state(msgpack.unpackb(msgpack.packb(first.to_state())))
    tail = [second.on_trade(trade(p, t, f"1-{n + 3}"), 0) for n, (p, t) in enumerate(ticks[3:])]
    assert head + tail == whole
    assert any(whole)


def test_strategies_are_chosen_by_settings() -> None:
    both = Settings(strategies=("threshold_cross", "rapid_move"), rapid_move_pct="0.2")
    built = build_strategies(both)
    assert [type(s) for s in built] == [ThresholdCross, RapidMove]
    assert [type(s) for s in build_strategies(Settings())] == [ThresholdCross]
    env = {"TICKPIPE_STRATEGIES": "rapid_move", "TICKPIPE_RAPID_MOVE_WINDOW_MS": "250"}
    settings = load_settings(env, dotenv_path=None)
    (strategy,) = build_strategies(settings)
    assert isinstance(strategy, RapidMove) and strategy.window_ns == 250 * MS
    moon = load_settings({"TICKPIPE_STRATEGIES": "rapid_move,moon"}, dotenv_path=None)
    with pytest.raises(ConfigError, match="unknown strategy moon"):
        build_strategies(moon)


def test_real_frames_give_cancel_signals_with_raw_entry_causes() -> None:
    entries = list(hftbacktest("btcusdt_20240808.gz"))
    settings = Settings(strategies=("rapid_move",), rapid_move_pct="0.05", rapid_move_window_ms=500)
    state = PartitionState.from_settings(settings, "binance:0", "binance")
    out = process_batch(state, entries, 1)
    assert out.signals
    ids = {eid for eid, _ in entries}
    trades = {t.src: t for t in out.trades}
    for signal in out.signals:
        assert signal.action == "cancel" and signal.strategy == "rapid_move"
        start, end = signal.cause.split(",")
        assert {start, end} <= ids
        assert signal.signal_id == f"binance|BTCUSDT|t{trades[end].trade_id}|rapid_move|0"
        move = abs(float(trades[end].price) / float(trades[start].price) - 1)
        assert move >= 0.0005
        assert trades[end].ts_event - trades[start].ts_event <= 500 * MS


def test_the_documented_example_strategy_runs() -> None:
    from pathlib import Path
    from typing import Any

    from tickpipe.common.schema import Bar, Quote

    doc = (Path(__file__).parents[2] / "docs" / "strategies.md").read_text()
    code = doc.split("## 2. The class")[1].split("```python\n")[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the tutorial's code, as a user would paste it
    cls = namespace["Momentum"]
    rule = cls(namespace["MomentumSettings"](lookback=2))
    for ts_open, close in ((0, "100"), (1, "102")):
        bar = Bar("binance", "BTCUSDT", "1s", ts_open, close, close, close, close, "1", 1, "1",
                  "1", True)  # fmt: skip
        assert rule.on_bar(bar, 0) == []
    quote = Quote("binance", "BTCUSDT", "103", "1", "103.2", "1", "7", 0, 0)
    (spec,) = rule.on_quote(quote, 0)
    # a post-only buy at its own side of the quote, the bid: it makes, never takes
    assert (spec.side, spec.price, spec.qty) == ("buy", "103", "0.001")
    assert (spec.order_type, spec.post_only, spec.action) == ("LIMIT", True, "place")
    assert rule.on_quote(quote, 0) == []  # once per crossing
    again = cls(namespace["MomentumSettings"](lookback=2))
    again.load_state(rule.to_state())
    assert again.on_quote(quote, 0) == []
