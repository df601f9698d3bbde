"""The default demo of `tickpipe up`: moves deterministic per seed, the user's settings kept."""

from __future__ import annotations

import json

from tickpipe.common.settings import load_settings
from tickpipe.mock_ws.scenarios import parse_scenarios, regime_from
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import RapidMove, ThresholdCross
from tickpipe.tools.demo import FIRST_MOVE_S, ROUND_S, demo_scenarios, demo_settings


def test_moves_are_the_same_for_a_seed_and_differ_between_seeds() -> None:
    assert demo_scenarios(7) == demo_scenarios(7)
    assert demo_scenarios(7) != demo_scenarios(8)


def test_each_round_spikes_crashes_fast_enough_and_comes_back() -> None:
    moves = demo_scenarios(1, horizon_s=3 * ROUND_S)
    assert [m["name"] for m in moves] == ["spike", "crash", "trend"] * 3
    first_spike, first_crash = moves[0], moves[1]
    assert FIRST_MOVE_S <= first_spike["at"] < first_crash["at"] < 60  # within the first minute
    for spike, crash, back in zip(moves[::3], moves[1::3], moves[2::3], strict=True):
        assert spike["pct"] >= 2.5  # a jump well beyond the rapid-move strategy's 0.5 %
        assert crash["pct"] / crash["duration"] >= 0.7  # % per second, beyond 0.5 % per second
        level = (1 - crash["pct"] / 100) * (1 + back["pct"] / 100)
        assert abs(level - 1) < 1e-5 and back["at"] > crash["at"] + crash["duration"]
    # The mock takes them as they are (the text form --scenario reads).
    for spec in parse_scenarios(json.dumps(moves)):
        regime_from(spec, 0, ["BTCUSDT", "ETHUSDT"])


def test_settings_fill_only_what_the_user_left_unset() -> None:
    extra, notes = demo_settings({})
    assert extra == {
        "TICKPIPE_STRATEGIES": "rapid_move,threshold_cross",
        "TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS": "40",
    }
    assert notes == []
    settings = load_settings(extra, dotenv_path=None)
    kinds = [type(s) for s in build_strategies(settings)]
    assert kinds == [RapidMove, ThresholdCross]
    # What the user set wins, and what the demo then cannot show is said.
    extra, notes = demo_settings({"TICKPIPE_STRATEGIES": "threshold_cross"})
    assert extra == {"TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS": "40"}
    assert notes == ["TICKPIPE_STRATEGIES has no rapid_move: no cancel on rapid moves"]
    given = {"TICKPIPE_STRATEGY_THRESHOLD_CROSS_PASSIVE_BPS": "0"}
    assert demo_settings(given)[0] == {"TICKPIPE_STRATEGIES": "rapid_move,threshold_cross"}
    extra, notes = demo_settings({"TICKPIPE_STRATEGIES": "rapid_move"})
    assert extra == {} and "no threshold_cross" in notes[0]
