"""`tickpipe up` with two venues: an ingestor, processor and trader per venue, one mock, one Redis.

Each venue's signals are executed once, at that venue: checked against the mock's ground truth
(Binance's ``order`` events, Alpaca's ``alpaca_order`` events), not against the pipeline's own
records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import RedisServer, wait_for
from tests.e2e.pipeline_support import entries as _entries
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import Signal
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NS = "e2e-venues"
KEYS = Keys(NS)
PARTS = {"binance": Partition("binance", 0), "alpaca": Partition("alpaca", 0)}
#: The mock's ground-truth event for an order it received, per venue.
ORDER_EVENT = {"binance": "order", "alpaca": "alpaca_order"}


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TICKPIPE_", "BINANCE_", "ALPACA_"))
    }
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **extra)
    return env


def _expected(client: object, venue: str) -> set[str]:
    """The client order ids of the place signals written so far on ``venue``'s partition."""
    entries = _entries(client, KEYS.signals(PARTS[venue]))  # type: ignore[arg-type]
    signals = [Signal.from_fields(f) for _, f in entries]
    assert all(s.venue == venue for s in signals)
    return {client_order_id_for(s.signal_id) for s in signals if s.action == "place"}


def _at_mock(truth_path: Path, venue: str) -> Counter[str]:
    events = read_ground_truth(truth_path).events(ORDER_EVENT[venue])
    return Counter(str(e["client_order_id"]) for e in events)


def test_up_with_two_venues_executes_each_signal_once_at_its_venue(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    truth = tmp_path / "ground-truth.jsonl"
    up = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "up", "--data-dir", str(tmp_path / "state"),
         "--rate", "30", "--no-dashboard", "--ground-truth", str(truth)],
        env=_env(
            REDIS_URL=redis_server.url,
            TICKPIPE_NAMESPACE=NS,
            TICKPIPE_VENUES="binance,alpaca",
            TICKPIPE_SYMBOLS="binance:BTCUSDT,alpaca:FAKEPACA",
            TICKPIPE_HYSTERESIS_BPS="1",
        ),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    client = redis_server.client()
    logs = tmp_path / "state" / "logs"
    try:

        def executed() -> bool:
            """Both venues have signals, and each signal's order reached its own venue."""
            for venue in PARTS:
                expected = _expected(client, venue)
                if not expected or set(_at_mock(truth, venue)) < expected:
                    return False
            return True

        wait_for(executed, timeout_s=90, what="a signal on each venue executed at its venue")
    except AssertionError:
        up.kill()
        print(up.communicate()[0])
        for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
            print(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
        raise
    up.send_signal(signal.SIGINT)
    out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    final = out[out.rindex("final status") :]
    for stage in ("ingestor", "processor", "trader"):  # one of each per venue, named after it
        for venue in PARTS:
            name = f"{stage}-{venue}"
            assert f"up-{name}" in final, final
    assert {p.name for p in logs.iterdir()} >= {
        "ingestor-binance.log", "ingestor-alpaca.log", "trader-binance.log", "trader-alpaca.log"
    }  # fmt: skip
    for venue, other in (("binance", "alpaca"), ("alpaca", "binance")):
        expected = _expected(client, venue)
        at_mock = _at_mock(truth, venue)
        print(venue, "signals:", len(expected), "orders at the mock:", sum(at_mock.values()))
        assert [cid for cid, n in at_mock.items() if n > 1] == []  # never twice
        assert set(at_mock) <= expected  # each order at the mock is one of this venue's signals
        assert not set(at_mock) & _expected(client, other)  # and none of the other venue's
        assert len(at_mock) >= 1
