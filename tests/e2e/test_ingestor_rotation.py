"""End to end: lifetime rotation and ``serverShutdown`` leave no gap and no duplicate downstream.

The real ingestor rotates its connections make-before-break (a short configured lifetime, then a
``serverShutdown`` fired by the mock's fault plan); the real processor de-duplicates the overlap
by venue trade id. Every trade the mock sent is in the trades stream exactly once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import Processes, RedisServer, wait_for
from tests.e2e.pipeline_support import trades_once
from tests.e2e.test_ingestor_faults import (
    KEYS,
    P,
    add_fault,
    health,
    markers,
    more_trades_then_drain,
    start,
)
from tests.rawread import rawframes
from tickpipe.ingestor.wsclient import WS_CLIENTS
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("ws_client", WS_CLIENTS)
def test_lifetime_rotation_and_server_shutdown_leave_no_gap_and_no_duplicate(
    redis_server: RedisServer, processes: Processes, tmp_path: Path, ws_client: str
) -> None:
    truth_path = tmp_path / "ground-truth.jsonl"
    ingestor, port = start(
        processes, redis_server.url, "--ground-truth", str(truth_path),
        TICKPIPE_BINANCE_CONN_LIFETIME_S="4", TICKPIPE_WS_CLIENT=ws_client,
    )  # fmt: skip
    processor = processes.start(
        "processor", "-m", "tickpipe.processor", env={"TICKPIPE_INSTANCE": "proc"}
    )
    client = redis_server.client()
    wait_for(lambda: health(client).get("rotations", 0) >= 2, timeout_s=30,
             what="two lifetime rotations")  # fmt: skip
    before = health(client)["rotations"]
    add_fault(port, {"type": "server_shutdown", "kind": "stream"})
    wait_for(lambda: health(client).get("rotations", 0) > before, timeout_s=15,
             what="a rotation on serverShutdown")  # fmt: skip
    more_trades_then_drain(client, ingestor, processor, more=40)

    frames = rawframes(client.xrange(KEYS.raw(P)))
    reasons = Counter(json.loads(m.data).get("reason") for m in markers(frames, "rotate"))
    assert reasons["serverShutdown"] >= 1 and sum(reasons.values()) >= 3, reasons
    assert markers(frames, "gap") == []

    trades = trades_once(client, KEYS, P)
    sent = {(t["symbol"], int(t["trade_id"])) for t in read_ground_truth(truth_path).trades_sent()}
    assert sent == {(t.symbol, int(t.trade_id)) for t in trades}
    for symbol in {s for s, _ in sent}:
        ids = sorted(i for s, i in sent if s == symbol)
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: the mock skipped trades"
