"""`tickpipe up` with no settings shows both trading actions, checked at the mock's ground truth.

A MARKET order filled on a threshold crossing, and a resting LIMIT order cancelled after a rapid
move of the demo's scheduled market moves; no order refused (for its size or anything else);
the position limit held. Real redis-server, every stage a real process.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.mock_ws.order_rules import MIN_NOTIONAL

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: Long enough for the first spike (+12-15 s) and crash (+27-33 s) of seed 1 and a few seconds.
DURATION_S = 45
#: A cancel belongs to a move when it comes within this long after the move ended.
AFTER_MOVE_NS = 3_000_000_000


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def _log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_up_with_no_settings_fills_a_market_order_and_cancels_a_resting_limit(
    tmp_path: Path,
) -> None:
    data, truth_path = tmp_path / "state", tmp_path / "ground-truth.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", str(DURATION_S),
         "--data-dir", str(data), "--ground-truth", str(truth_path), "--no-dashboard"],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    truth = read_ground_truth(truth_path)
    orders = truth.orders()
    reports = truth.events("execution_report")
    ours = {o["order_id"]: o for o in orders if str(o["client_order_id"]).startswith("tp-")}
    assert ours and set(ours) == {o["order_id"] for o in orders}, orders

    # 1. MARKET orders filled on threshold crossings: per symbol the sides alternate.
    filled = {r["order_id"] for r in reports if r["X"] == "FILLED"}
    markets = [o for o in ours.values() if o["type"] == "MARKET"]
    assert markets and all(o["order_id"] in filled for o in markets), markets
    for symbol in {o["symbol"] for o in markets}:
        sides = [o["side"] for o in markets if o["symbol"] == symbol]
        assert all(a != b for a, b in itertools.pairwise(sides)), (symbol, sides)

    # 2. A resting LIMIT order cancelled at the mock, within a scheduled spike or crash.
    moves = [e for e in truth.events("scenario") if e["name"] in ("spike", "crash")]
    windows = [(e["start_ns"], e["start_ns"] + int(e["duration"] * 1e9)) for e in moves]
    cancels = [r for r in reports if r["X"] == "CANCELED" and r["order_id"] in ours]
    limits = [o for o in ours.values() if o["type"] == "LIMIT"]
    shown = [(ours[r["order_id"]]["symbol"], r["E"]) for r in cancels]
    print(f"{len(markets)} MARKET orders filled, {len(limits)} LIMIT orders, "
          f"{len(cancels)} cancelled (symbol, ms): {shown}")  # fmt: skip
    assert cancels, reports
    for report in cancels:
        assert ours[report["order_id"]]["type"] == "LIMIT"
        ts_ns = report["E"] * 1_000_000
        assert any(start <= ts_ns <= end + AFTER_MOVE_NS for start, end in windows), report

    # 3. Nothing refused, by the venue or before sending: every order cleared the minimum
    # notional, and the trader logged no refusal at all.
    assert not [o for o in ours.values() if o["status"] in ("REJECTED", "EXPIRED")]
    for order in markets:
        price = next(
            r["L"] for r in reports if r["order_id"] == order["order_id"] and r["x"] == "TRADE"
        )
        assert Decimal(order["qty"]) * Decimal(price) >= MIN_NOTIONAL, order
    trader_log = _log_lines(data / "logs" / "trader.log")
    refused = [e for e in trader_log if e.get("msg") == "order rejected"]
    assert not refused, refused
    assert any(e.get("msg") == "order canceled" for e in trader_log)

    # 4. The position limit held (TICKPIPE_MAX_POSITION, default 1) on the venue's own fills.
    net: dict[str, Decimal] = {}
    for report in reports:
        if report["x"] == "TRADE" and report["order_id"] in ours:
            order = ours[report["order_id"]]
            sign = 1 if order["side"] == "BUY" else -1
            net[order["symbol"]] = net.get(order["symbol"], Decimal(0)) + sign * Decimal(
                report["l"]
            )
    assert all(abs(v) <= 1 for v in net.values()), net
    # 5. The run said what the demo added.
    demo = [line for line in out.splitlines() if line.startswith("demo:")]
    print(demo)
    assert demo and "TICKPIPE_STRATEGIES=rapid_move,threshold_cross" in demo[0]
