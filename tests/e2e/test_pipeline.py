"""End to end: real redis-server, every stage a real process, against the mock exchange.

Compared with the mock's ground truth: every trade it sent is in the trades stream exactly once,
the 1-minute bars equal bars computed independently with pandas, and each signal produced exactly
one order at the mock.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import Processes, RedisServer
from tests.e2e.pipeline_support import entries, placed_ids, run_to_orders, trades_once
from tests.e2e.scenario_support import assert_bars_equal
from tickpipe.common.names import Keys, Partition
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

NS = "e2e"
KEYS = Keys(NS)
P = Partition("binance", 0)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def test_pipeline_end_to_end_against_ground_truth(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    truth_path = tmp_path / "ground-truth.jsonl"
    key, secret = "e2e-key-123", "e2e-secret-456"
    processes.env.update(BINANCE_API_KEY=key, BINANCE_API_SECRET=secret)
    stages = processes.start_binance_pipeline(
        redis_server.url, NS, SYMBOLS, "--seed", "7", "--rate", "40",
        "--ground-truth", str(truth_path),
    )  # fmt: skip
    client = redis_server.client()
    run_to_orders(processes, client, KEYS, P, stages, trades=300)

    truth = read_ground_truth(truth_path)

    # 1. Every trade the mock sent is in the trades stream exactly once.
    trades = trades_once(client, KEYS, P)
    sent = truth.trades_sent()
    sent_ids = {(t["symbol"], int(t["trade_id"])) for t in sent}
    assert len(sent_ids) >= 300
    assert sent_ids == {(t.symbol, int(t.trade_id)) for t in trades}
    by_id = {(t["symbol"], int(t["trade_id"])): t for t in sent}
    for t in trades:
        expected = by_id[(t.symbol, int(t.trade_id))]
        assert (t.price, t.qty, t.ts_event) == (expected["price"], expected["qty"],
                                                expected["T"] * 1_000_000)  # fmt: skip

    # 2. The 1-minute bars (latest revision of each) equal bars computed with pandas.
    assert_bars_equal(client, KEYS, P, sent)

    # 3. Each signal produced exactly one order at the mock, and nothing else was ordered.
    assert client.xlen(KEYS.signals(P)) >= 2
    orders = Counter(o["client_order_id"] for o in truth.orders())
    expected_ids = placed_ids(client, KEYS, P)
    assert dict(orders) == dict.fromkeys(expected_ids, 1)
    recorded = {f.get("client_order_id") for _, f in entries(client, KEYS.orders("binance"))}
    assert expected_ids <= recorded
