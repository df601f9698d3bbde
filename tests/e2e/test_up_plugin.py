"""An installed strategy plug-in trades under a real ``tickpipe up``: its signals reach the mock.

The ``examples/momentum`` package is ``pip install``-ed into a folder of its own and found by
its entry point (``TICKPIPE_STRATEGIES=momentum``, the only strategy), its settings come from
``TICKPIPE_STRATEGY_MOMENTUM_*``, and every stage runs as its own process on the embedded
redis-server against the mock. Ground truth is the mock's log of the orders it received: they
carry the client order ids the trader derives from signal ids, and the venue accepted them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_up import _env
from tests.unit.test_processor_plugins import REPO, install_example
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e


def test_an_installed_plugin_trades_under_tickpipe_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_example(site)
    truth = tmp_path / "ground-truth.jsonl"
    env = _env(
        TICKPIPE_STRATEGIES="momentum",
        TICKPIPE_STRATEGY_MOMENTUM_LOOKBACK="2",
        TICKPIPE_STRATEGY_MOMENTUM_THRESHOLD_BPS="0.2",
        TICKPIPE_PRICE_BAND_BPS="500",
    )
    env["PYTHONPATH"] = f"{REPO}:{site}"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "25", "--data-dir",
         str(tmp_path / "state"), "--rate", "50", "--no-dashboard", "--ground-truth", str(truth)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    final = out[out.rindex("final status") :]
    totals = dict(re.findall(r"(\w[\w-]*)=([\d,]+)", final.splitlines()[1]))
    assert int(totals["signals"].replace(",", "")) > 0, final
    orders = [
        o for o in read_ground_truth(truth).orders() if str(o["client_order_id"])[:3] == "tp-"
    ]
    accepted = [o for o in orders if o["status"] != "REJECTED"]
    assert accepted, (orders, final)
    assert len({o["client_order_id"] for o in orders}) == len(orders)  # one order per signal
