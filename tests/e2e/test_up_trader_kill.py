"""`tickpipe up`'s embedded default: a decision whose first request the venue never got.

The mock holds the next order request unexecuted and unanswered (fault ``order_error``
``timeout``). Either the trader is killed (SIGKILL) while it waits and ``tickpipe up`` restarts
it, and the restarted trader finds the intent; or the trader waits for the answer until no copy
of its request can be accepted any more (Binance's receive window after the intent, and a margin).
Both look the order up (the venue has none) and place the decision again, once. Checked at the
mock's ground truth: the decision was executed exactly once, and its first request never.
"""

from __future__ import annotations

import os
import random
import signal
import ssl
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.e2e.test_up_security import K, UpRun, V, _start_up
from tests.waits import wait_for
from tickpipe.common.schema import decode_fields
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e


@pytest.fixture
def up_run() -> Iterator[list[UpRun]]:
    runs: list[UpRun] = []
    yield runs
    for run in runs:  # SIGTERM: tickpipe up stops its stages, its redis-server and the mock
        if run.proc.poll() is None:
            run.stop()


def _children(pid: int, module: str) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line runs ``-m module``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid and module.encode() in argv:
            out.append(int(entry))
    return out


def _inject(data: Path, fault: dict[str, object]) -> None:
    """POST ``fault`` to the mock that ``tickpipe up`` started (over its TLS, trusting its CA)."""
    ready = orjson.loads((data / "mock.ready.json").read_bytes())
    context = ssl.create_default_context(cafile=ready["ca_file"])
    request = urllib.request.Request(
        f"https://127.0.0.1:{ready['binance_port']}/_mock/faults",
        data=orjson.dumps(fault),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        assert answer.status == 200, answer.read()


@pytest.mark.parametrize("kill", [True, False], ids=["trader-killed", "no-answer"])
def test_a_decision_the_venue_never_got_is_executed_once(
    kill: bool, tmp_path: Path, up_run: list[UpRun]
) -> None:
    """``kill``: the trader is killed while it waits; else it waits for the answer in vain."""
    truth_file = tmp_path / "ground-truth.jsonl"
    seed = random.SystemRandom().randrange(1, 2**31)
    print(f"mock market seed {seed}")
    # A decision is placed again while no older than TICKPIPE_MAX_PRICE_AGE_S: room for a slow
    # restart under load (the default, 10 s, leaves 4 s after the 6-s receive window and
    # margin). Waiting for an answer keeps the default: the trader must give up in time.
    age = {"TICKPIPE_MAX_PRICE_AGE_S": "30"} if kill else {}
    run = _start_up(
        tmp_path, "--rate", "50", "--no-dashboard", "--ground-truth", str(truth_file),
        "--duration", "180", "--seed", str(seed), **age,
    )  # fmt: skip
    up_run.append(run)
    run.wait_ready()
    wait_for(lambda: (run.data / "mock.ready.json").exists(), timeout_s=30, what="the mock")
    wait_for(lambda: read_ground_truth(truth_file).orders(), timeout_s=90, what="a first order")

    _inject(run.data, {"type": "order_error", "mode": "timeout"})  # the next order: held

    def held() -> str | None:
        hits = [h for h in read_ground_truth(truth_file).events("fault_hit")
                if h.get("type") == "order_error"]  # fmt: skip
        return str(hits[0]["client_order_id"]) if hits else None

    cid = str(wait_for(held, timeout_s=90, what="an order request held by the mock"))
    since = time.monotonic()
    if kill:
        [trader] = _children(run.proc.pid, "tickpipe.trader")
        os.kill(trader, signal.SIGKILL)  # it waits for the venue's answer: the order is unplaced
        wait_for(
            lambda: [p for p in _children(run.proc.pid, "tickpipe.trader") if p != trader],
            timeout_s=30, what="tickpipe up to restart the trader",
        )  # fmt: skip
    operator = run.client("operator")

    def events_of() -> list[str]:
        fields = [decode_fields(f) for _, f in operator.xrange(K.orders(V), "-", "+")]
        return [e["event"] for e in fields if e.get("client_order_id") == cid]

    wait_for(lambda: "ack" in events_of(), timeout_s=60, what=f"{cid} placed again")
    print(f"{cid}: placed again, acknowledged {time.monotonic() - since:.1f} s after it was held")
    events = events_of()
    operator.close()
    assert run.stop() == 0, run.output()

    assert events[0] == "intent" and events.count("placed_again") == 1, events
    assert events.index("placed_again") < events.index("ack"), events
    truth = read_ground_truth(truth_file)
    executed = Counter(str(o["client_order_id"]) for o in truth.orders())
    assert executed[cid] == 1, "the decision was not executed exactly once"
    assert {c: n for c, n in executed.items() if n > 1} == {}, "an order executed twice"
    held_requests = [h for h in truth.events("fault_hit") if h.get("client_order_id") == cid]
    assert len(held_requests) == 1  # the first request: held by the mock, never executed
