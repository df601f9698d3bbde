"""End to end on Alpaca: real redis-server, every stage a real process, the mock's Alpaca venue.

Market data over msgpack, orders over REST, order updates over the trading stream. Compared with
the mock's ground truth: every trade it sent is in the trades stream exactly once, with its price
and size, and each signal produced exactly one order at the venue.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import Processes, RedisServer
from tests.e2e.pipeline_support import placed_ids, run_to_orders, trades_once
from tickpipe.common.names import Keys, Partition
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

NS = "e2e-alpaca"
KEYS = Keys(NS)
P = Partition("alpaca", 0)


def test_alpaca_pipeline_end_to_end_against_ground_truth(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    truth_path = tmp_path / "ground-truth.jsonl"
    key, secret = "e2e-alpaca-key", "e2e-alpaca-secret"
    processes.env.update(BINANCE_API_KEY=key, BINANCE_API_SECRET=secret)
    port = processes.start_venue_mock(
        "alpaca", "--seed", "3", "--rate", "30", "--ground-truth", str(truth_path)
    )
    processes.point_stages(
        redis_server.url, NS, "alpaca", ["FAKEPACA"],
        ALPACA_API_KEY=key,
        ALPACA_API_SECRET=secret,
        TICKPIPE_ALPACA_DATA_URL=f"ws://127.0.0.1:{port}",
        TICKPIPE_ALPACA_FEED="test",
        TICKPIPE_ALPACA_TRADING_URL=f"ws://127.0.0.1:{port}/stream",
        TICKPIPE_ALPACA_REST_URL=f"http://127.0.0.1:{port}",
        TICKPIPE_ORDER_QTY="1",
    )  # fmt: skip
    stages = processes.start_pipeline()
    client = redis_server.client()
    run_to_orders(processes, client, KEYS, P, stages, trades=150)

    truth = read_ground_truth(truth_path)
    trades = trades_once(client, KEYS, P)
    sent = {(e["symbol"], int(e["trade_id"])): e for e in truth.events("alpaca_trade_sent")}
    assert len(sent) >= 150
    assert set(sent) == {(t.symbol, int(t.trade_id)) for t in trades}
    for t in trades:
        expected = sent[(t.symbol, int(t.trade_id))]
        assert Decimal(t.price) == Decimal(str(expected["price"]))
        assert Decimal(t.qty) == Decimal(str(expected["size"]))
        assert t.ts_event == expected["t"]

    orders = Counter(o["client_order_id"] for o in truth.events("alpaca_order"))
    expected_ids = placed_ids(client, KEYS, P)
    assert len(expected_ids) >= 2
    assert dict(orders) == dict.fromkeys(expected_ids, 1)
