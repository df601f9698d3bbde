"""Strategy discovery (built-in, entry point, module:Class path) and strategies' own settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.test_processor_core import PARTITION, TS_NOW, real_entries
from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import Settings, load_settings
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import RapidMove, ThresholdCross

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "examples" / "momentum"

PLUGIN = """
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from tickpipe.processor.strategies import Strategy


@dataclass(frozen=True)
class Knobs:
    level: Decimal
    window: int = 3
    loud: bool = False


class Mine(Strategy):
    name: ClassVar[str] = "mine"
    params = Knobs

    def __init__(self, knobs):
        self.knobs = knobs

    def to_state(self):
        return None

    def load_state(self, data):
        return None


class NotOne:
    name = "not_one"


class Grumpy(Strategy):
    name: ClassVar[str] = "grumpy"

    def __init__(self):
        raise KeyError("no key")

    def to_state(self):
        return None

    def load_state(self, data):
        return None
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "__init__.py").write_text("")
    (tmp_path / "my_plugins" / "mine.py").write_text(PLUGIN)
    (tmp_path / "my_plugins" / "broken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env, dotenv_path=None)


def test_a_strategy_is_found_by_path_with_its_own_typed_settings(plugin_dir: Path) -> None:
    env = {
        "TICKPIPE_STRATEGIES": "threshold_cross,my_plugins.mine:Mine",
        "TICKPIPE_STRATEGY_MINE_LEVEL": "1.5",
        "TICKPIPE_STRATEGY_MINE_LOUD": "true",
    }
    built = build_strategies(settings_of(env))
    assert [type(s).__name__ for s in built] == ["ThresholdCross", "Mine"]
    knobs = built[1].knobs  # type: ignore[attr-defined]
    assert (knobs.level, knobs.window, knobs.loud) == (Decimal("1.5"), 3, True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TICKPIPE_STRATEGY_MINE_LEVL": "1", "TICKPIPE_STRATEGY_MINE_LEVEL": "1"},
            "unknown strategy setting(s) TICKPIPE_STRATEGY_MINE_LEVL "
            "(did you mean TICKPIPE_STRATEGY_MINE_LEVEL?)",
        ),
        ({}, "TICKPIPE_STRATEGY_MINE_LEVEL is required by strategy 'mine'"),
        (
            {"TICKPIPE_STRATEGY_MINE_LEVEL": "1", "TICKPIPE_STRATEGY_MINE_WINDOW": "three"},
            "TICKPIPE_STRATEGY_MINE_WINDOW='three': invalid literal for int()",
        ),
        (
            {"TICKPIPE_STRATEGY_MINE_LEVEL": "1", "TICKPIPE_STRATEGY_MINE_LOUD": "maybe"},
            "TICKPIPE_STRATEGY_MINE_LOUD='maybe': must be true or false",
        ),
        (
            {"TICKPIPE_STRATEGY_MINE_LEVEL": "1", "TICKPIPE_STRATEGY_MAX_FAILURE": "3"},
            "did you mean TICKPIPE_STRATEGY_MAX_FAILURES?",
        ),
    ],
)
def test_strategy_settings_mistakes_are_one_line(
    plugin_dir: Path, env: dict[str, str], message: str
) -> None:
    settings = settings_of({"TICKPIPE_STRATEGIES": "my_plugins.mine:Mine", **env})
    with pytest.raises(ConfigError) as caught:
        build_strategies(settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("strategies", "message"),
    [
        ("threshold_cros", "unknown strategy threshold_cros (did you mean threshold_cross?)"),
        ("my_plugins.nowhere:Mine", "cannot import 'my_plugins.nowhere' (ModuleNotFoundError"),
        ("my_plugins.broken:Mine", "cannot import 'my_plugins.broken' (ModuleNotFoundError"),
        ("my_plugins.mine:Yours", "module 'my_plugins.mine' has no 'Yours'"),
        ("my_plugins.mine:NotOne", "'my_plugins.mine:NotOne' is not a processor.strategies"),
        ("my_plugins.mine:Grumpy", "strategy 'grumpy' could not be built (KeyError: 'no key')"),
    ],
)
def test_strategy_lookup_mistakes_are_one_line(
    plugin_dir: Path, strategies: str, message: str
) -> None:
    settings = settings_of({"TICKPIPE_STRATEGIES": strategies})
    with pytest.raises(ConfigError) as caught:
        build_strategies(settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_malformed_strategy_list_is_refused_when_loading_settings() -> None:
    with pytest.raises(ConfigError, match="neither a strategy name nor a module:Class path"):
        settings_of({"TICKPIPE_STRATEGIES": "threshold_cross,my pkg:X"})


def test_builtins_keep_their_settings() -> None:
    env = {"TICKPIPE_STRATEGIES": "rapid_move,threshold_cross", "TICKPIPE_RAPID_MOVE_PCT": "2"}
    built = build_strategies(settings_of(env))
    assert [type(s) for s in built] == [RapidMove, ThresholdCross]
    assert built[0].pct == "2"  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [["tickpipe.processor"], ["tickpipe", "up", "--duration", "1"]])
def test_a_strategy_mistake_exits_2_before_anything_starts(
    tmp_path: Path, command: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKPIPE_")}
    env.pop("REDIS_URL", None)
    env.update(
        TICKPIPE_STRATEGIES="threshold_cross,no_such_pkg.x:Y",
        TICKPIPE_NAMESPACE="pe2",
        PYTHONPATH=str(REPO),
    )
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=tmp_path,  # no .env there
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "no_such_pkg" in line]
    assert len(errors) == 1 and "cannot import 'no_such_pkg.x'" in errors[0]


def install_example(target: Path) -> None:
    """``pip install`` a copy of the example (the build leaves files in its source folder)."""
    source = target.parent / "momentum-src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--target", str(target), str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=target.parent,
    )  # fmt: skip


def test_the_example_is_found_by_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "site"
    install_example(target)
    monkeypatch.syspath_prepend(str(target))
    for name in [m for m in sys.modules if m.partition(".")[0] == "tickpipe_momentum"]:
        monkeypatch.delitem(sys.modules, name)  # imported from examples/ by an earlier test
    env = {
        "TICKPIPE_STRATEGIES": "momentum",
        "TICKPIPE_STRATEGY_MOMENTUM_LOOKBACK": "3",
        "TICKPIPE_STRATEGY_MOMENTUM_THRESHOLD_BPS": "0.5",
    }
    (strategy,) = build_strategies(settings_of(env))
    assert type(strategy).__module__ == "tickpipe_momentum"
    assert Path(sys.modules["tickpipe_momentum"].__file__ or "").is_relative_to(target)
    assert strategy.settings.lookback == 3  # type: ignore[attr-defined]
    # It trades quotes against bars on the real capture, the same whatever the batches.
    entries = list(real_entries())
    whole = process_batch(PartitionState(PARTITION, "binance", [strategy]), entries, TS_NOW)
    places = [s for s in whole.signals if s.action == "place"]
    assert places and all("|q" in s.signal_id and s.post_only for s in places)
    assert any(s.action == "cancel" for s in whole.signals)  # reversals and unfilled orders
    (fresh,) = build_strategies(settings_of(env))
    state, halves = PartitionState(PARTITION, "binance", [fresh]), []
    for batch in (entries[: len(entries) // 2], entries[len(entries) // 2 :]):
        halves += process_batch(state, batch, TS_NOW).signals
    assert halves == whole.signals
    bad = {"TICKPIPE_STRATEGIES": "momentum", "TICKPIPE_STRATEGY_MOMENTUM_LOOKBAK": "3"}
    with pytest.raises(ConfigError, match="did you mean TICKPIPE_STRATEGY_MOMENTUM_LOOKBACK"):
        build_strategies(settings_of(bad))
    monkeypatch.delitem(sys.modules, "tickpipe_momentum")


def test_an_uninstalled_name_is_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown strategy momentum"):
        build_strategies(settings_of({"TICKPIPE_STRATEGIES": "momentum"}))


def test_strategy_settings_are_read_from_dotenv_too(plugin_dir: Path, tmp_path: Path) -> None:
    dotenv = tmp_path / "strategies.env"
    dotenv.write_text(
        "TICKPIPE_STRATEGIES=my_plugins.mine:Mine\nTICKPIPE_STRATEGY_MINE_LEVEL=2.5\n"
    )
    settings = load_settings({"TICKPIPE_STRATEGY_MINE_WINDOW": "9"}, dotenv_path=dotenv)
    (mine,) = build_strategies(settings)
    assert (mine.knobs.level, mine.knobs.window) == (Decimal("2.5"), 9)  # type: ignore[attr-defined]
    dotenv.write_text("TICKPIPE_STRATEGIS=my_plugins.mine:Mine\n")
    with pytest.raises(ConfigError, match="did you mean TICKPIPE_STRATEGIES"):
        load_settings({}, dotenv_path=dotenv)
