"""An installed strategy plug-in trades under a real ``tickpipe up``: post-only orders, cancels.

The ``examples/momentum`` package is ``pip install``-ed into a folder of its own and found by
its entry point (``TICKPIPE_STRATEGIES=momentum``, the only strategy), its settings come from
``TICKPIPE_STRATEGY_MOMENTUM_*``, and every stage runs as its own process on the embedded
redis-server against the mock. Ground truth is the mock's log: the orders it received carry
the client order ids the trader derives from signal ids, every one of them is a post-only
``LIMIT_MAKER`` that rested (or was refused as taking), and the strategy's cancels reached the
venue and cancelled resting orders (``executionReport`` CANCELED).
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


def test_an_installed_plugin_quotes_post_only_and_cancels_under_tickpipe_up(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    install_example(site)
    truth = tmp_path / "ground-truth.jsonl"
    env = _env(
        TICKPIPE_STRATEGIES="momentum",
        TICKPIPE_STRATEGY_MOMENTUM_LOOKBACK="2",
        TICKPIPE_STRATEGY_MOMENTUM_THRESHOLD_BPS="0.2",
        TICKPIPE_STRATEGY_MOMENTUM_CANCEL_AFTER_BARS="1",
        TICKPIPE_PRICE_BAND_BPS="500",
    )
    env["PYTHONPATH"] = f"{REPO}:{site}"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "30", "--data-dir",
         str(tmp_path / "state"), "--rate", "20", "--no-dashboard", "--ground-truth", str(truth)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    final = out[out.rindex("final status") :]
    totals = dict(re.findall(r"(\w[\w-]*)=([\d,]+)", final.splitlines()[1]))
    assert int(totals["signals"].replace(",", "")) > 0, final
    log = read_ground_truth(truth)
    orders = [o for o in log.orders() if str(o["client_order_id"])[:3] == "tp-"]
    ours = {o["client_order_id"] for o in orders}
    assert len(ours) == len(orders)  # one order per signal
    # Every order the strategy placed reached the venue post-only, and rested or was refused.
    assert orders and {o["type"] for o in orders} == {"LIMIT_MAKER"}, orders
    # Reports name an order by the venue's order id (a cancel's report carries the cancel
    # request's own client id, as Binance's does).
    ids = {o["order_id"] for o in orders if o["order_id"] is not None}
    reports = [r for r in log.events("execution_report") if r["order_id"] in ids]
    rested = {r["order_id"] for r in reports if r["x"] == "NEW"}
    assert rested == ids, (orders, final)  # every order the venue accepted rested first
    refused = [o for o in orders if o["status"] == "REJECTED"]
    assert all(o["code"] == -2010 for o in refused), refused  # only as would-take
    # Its cancels cancelled resting orders at the venue, once each, and nothing filled after.
    canceled = [r for r in reports if r["x"] == "CANCELED"]
    assert canceled, (reports, final)
    assert len({r["order_id"] for r in canceled}) == len(canceled)
    cut = {r["order_id"]: r["E"] for r in canceled}
    late = [r for r in reports if r["x"] == "TRADE" and r["E"] > cut.get(r["order_id"], r["E"])]
    assert not late, late
