"""`TICKPIPE_VENUE=ibkr tickpipe up`: the whole pipeline on the IBKR gateway mock, by the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_up_on_ibkr_trades_through_the_gateway_without_a_429(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(
        PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", TICKPIPE_VENUE="ibkr",
        TICKPIPE_HYSTERESIS_BPS="1",
    )  # fmt: skip
    # No order size and no allowed question: the defaults a user starts with must trade.
    # The gateway path alone, at the threshold strategy's pace: the demo's market moves and its
    # extra strategies are checked on Binance by test_up_demo.py.
    data, truth = tmp_path / "state", tmp_path / "truth.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "25", "--data-dir", str(data),
         "--no-dashboard", "--no-demo", "--ground-truth", str(truth)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    final = out[out.rindex("final status") :]
    for stage in ("ingestor", "processor", "trader"):
        assert re.search(rf"{stage}\[up-{stage}[^\]]*\]\s+ok", final), final
    trader = dict(re.findall(r"(\w+)=(\d+)", final[final.index("trader[") :]))
    assert int(trader["acks"]) >= 1 and int(trader["updates"]) >= 1, final
    events = [json.loads(line) for line in truth.read_text().splitlines()]
    orders = Counter(e["cOID"] for e in events if e["ev"] == "ibkr_order")
    assert orders and set(orders.values()) == {1}, orders
    lines = (data / "logs" / "trader.log").read_text().splitlines()
    trader_log = [json.loads(line) for line in lines if line.startswith("{")]
    # every order at the gateway acknowledged by the trader: its totals when it stopped (the
    # status lines are a snapshot a second old, which an order in the last second outruns)
    (stopped,) = [e for e in trader_log if e.get("msg") == "trader stopped"]
    assert len(orders) == stopped["acks"], (orders, stopped)
    # whole shares and the market-order question allowed: the gateway refuses none of them (a
    # refusal of the trader's own risk checks, a market view gone stale under load, may happen)
    refused = [
        e for e in trader_log if e.get("msg") == "order rejected" and e.get("stage") == "venue"
    ]
    assert refused == [], refused
    mock_log = (data / "logs" / "mock_ws.log").read_text()
    assert " 429 " not in mock_log and '"429 ' not in mock_log, "the gateway had to refuse"
