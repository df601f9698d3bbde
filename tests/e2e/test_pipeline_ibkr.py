"""End to end on IBKR: real redis-server, every stage a real process, the mock's gateway.

Level-1 updates over the gateway's WebSocket become quotes and last-trade samples, bars and
signals; each signal becomes exactly one order at the gateway, its confirmation question
(``o10151``, market order) answered because the allow-list names it; the fills come back over
the ``sor`` topic and the trader's positions equal the gateway's account. Compared with the
mock's ground truth: every last-trade update it sent is in the trades stream exactly once.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.conftest import Processes, RedisServer, drain, wait_for
from tests.e2e.pipeline_support import placed_ids, trades_once
from tickpipe.common.names import Keys, Partition
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

NS = "e2e-ibkr"
KEYS = Keys(NS)
P = Partition("ibkr", 0)


def gateway_env(port: int) -> dict[str, str]:
    """The settings that point the stages at the gateway mock on ``port`` (``o10151`` allowed)."""
    return {
        "TICKPIPE_IBKR_REST_URL": f"http://127.0.0.1:{port}/v1/api",
        "TICKPIPE_IBKR_WS_URL": f"ws://127.0.0.1:{port}/v1/api/ws",
        "TICKPIPE_IBKR_ACCOUNT": "DU1234567",
        "TICKPIPE_IBKR_ALLOW_QUESTIONS": "o10151",
    }


def _gateway_positions(port: int) -> dict[str, Decimal]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/ibkr/status", timeout=5) as r:
        status = json.loads(r.read())
    return {s: Decimal(q) for s, q in status["positions"].items() if Decimal(q) != 0}


def _trader_positions(client: object) -> dict[str, Decimal]:
    fields = client.hgetall(KEYS.positions("ibkr"))  # type: ignore[attr-defined]
    out = {}
    for key, value in fields.items():
        name = key.decode() if isinstance(key, bytes) else key
        if ":" not in name:
            out[name] = Decimal(value.decode() if isinstance(value, bytes) else value)
    return {s: q for s, q in out.items() if q != 0}


def test_ibkr_pipeline_end_to_end_against_ground_truth(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    truth_path = tmp_path / "ground-truth.jsonl"
    port = processes.start_venue_mock(
        "ibkr", "--seed", "3", "--rate", "30", "--ground-truth", str(truth_path)
    )
    processes.point_stages(
        redis_server.url, NS, "ibkr", ["AAPL"],
        **gateway_env(port), TICKPIPE_ORDER_QTY="1", TICKPIPE_RECONCILE_EVERY_S="2",
    )  # fmt: skip
    ingestor, processor, trader = processes.start_pipeline()
    client = redis_server.client()
    try:
        wait_for(
            lambda: client.xlen(KEYS.trades(P)) >= 40,
            timeout_s=60,
            what="40 last-trade samples in the trades stream",
        )
        wait_for(lambda: client.xlen(KEYS.signals(P)) >= 2, timeout_s=60, what="two signals")
        wait_for(
            lambda: bool(_gateway_positions(port)) or client.xlen(KEYS.signals(P)) >= 3,
            timeout_s=30,
            what="a fill at the gateway",
        )
        # The gateway session's figures are published with the ingestor's health.
        blob = client.get(KEYS.health("ingestor", "ing"))
        health = json.loads(blob) if blob else {}
        assert health.get("venue_reauthentications") == 0, health
        assert health.get("venue_rest_failures") == 0, health
        drain(client, KEYS, P, ingestor)
        wait_for(
            lambda: _trader_positions(client) == _gateway_positions(port),
            timeout_s=40,
            what="the trader's positions to equal the gateway's account",
        )
        final = _gateway_positions(port)
        assert processor.stop() == 0, processor.tail()
        assert trader.stop() == 0, trader.tail()
    except AssertionError:
        print(processes.dump_logs())
        print("trader:", _trader_positions(client), client.hgetall(KEYS.positions("ibkr")))
        print("gateway:", _gateway_positions(port))
        for _, f in client.xrange(KEYS.orders("ibkr")):
            print(
                "ORDER",
                {
                    k.decode(): v.decode()[:60]
                    for k, v in f.items()
                    if k
                    in (
                        b"client_order_id",
                        b"event",
                        b"status",
                        b"executed_qty",
                        b"filled_qty",
                        b"source",
                        b"side",
                        b"exec_type",
                    )
                },
            )
        raise

    truth = read_ground_truth(truth_path)
    trades = trades_once(client, KEYS, P)
    seen = {(t.symbol, int(t.trade_id)) for t in trades}
    sent = {
        (e["symbol"], int(e["updated"])): e
        for e in truth.events("ibkr_last_sent")
        if not str(e["price"]).startswith("C")
    }
    assert len(sent) >= 40
    assert set(sent) == seen
    for t in trades:
        expected = sent[(t.symbol, int(t.trade_id))]
        assert Decimal(t.price) == Decimal(expected["price"])
        assert Decimal(t.qty) == Decimal(expected["size"])

    orders = Counter(o["cOID"] for o in truth.events("ibkr_order"))
    expected_ids = placed_ids(client, KEYS, P)
    assert len(expected_ids) >= 2
    assert dict(orders) == dict.fromkeys(expected_ids, 1)
    fills: dict[str, Decimal] = {}
    for fill in truth.events("ibkr_fill"):
        size = Decimal(str(fill["size"]))
        fills[fill["symbol"]] = fills.get(fill["symbol"], Decimal(0)) + (
            size if fill["side"] == "B" else -size
        )
    assert {s: q for s, q in fills.items() if q} == final == _trader_positions(client)
    # Every order filled at the gateway (one share each), and the trader recorded each fill.
    assert sorted(f["order_ref"] for f in truth.events("ibkr_fill")) == sorted(expected_ids)
    recorded = {
        f.get(b"client_order_id", b"").decode()
        for _, f in client.xrange(KEYS.orders("ibkr"))
        if f.get(b"status") == b"FILLED"
    }
    assert expected_ids <= recorded
