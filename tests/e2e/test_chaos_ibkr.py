"""Chaos end to end on IBKR: session expiry, a lost order answer, a trader killed mid-flow.

A real ``redis-server``, the mock's Client Portal gateway (``--ibkr-port``) and the three stages
as real processes trade AAPL and MSFT for ``TICKPIPE_CHAOS_IBKR_S`` seconds (default 45) with
LIMIT orders (the order ``POST`` itself places them), a position limit low enough that the risk
check refuses a signal now and then, and the market-order question ``o10151`` allow-listed. On a
schedule drawn from ``TICKPIPE_CHAOS_SEED`` (random unless set; it and every drawn timing are
printed, so that a failure can be replayed), in this order (:data:`PHASES`):

* the brokerage session expires (``POST /_mock/ibkr/expire``, as when nothing tickled it): the
  gateway answers ``/iserver`` with 401 and ends every market-data subscription until someone
  re-authenticates;
* the answer to an order ``POST`` is lost after the gateway placed the order (the fault plan's
  ``order_error`` ``lost``: a 504 after a drawn hang); the trader must settle it by looking the
  ``cOID`` up, never by placing it again;
* the trader is killed (SIGKILL) while the gateway holds an order ``POST`` unanswered and
  unexecuted (``order_error`` ``timeout``), a drawn 0-50 ms after it wrote a further intent (so
  orders are in flight and queued behind the gateway's pace), dead for a drawn while, and
  restarted. Every intent it had recorded that the gateway had not placed is a decision the
  restarted trader must place, under its ``cOID``, exactly once (the gateway's ground truth).

Then the kill switch cancels every working order, the input stops, everything drains, and at
the mock's ground truth: every cOID was placed at most once; every placing signal was placed
once, refused by the risk check, or refused with a dead letter (never two of these); every
order the gateway placed ends known to the trader with the gateway's filled quantity; the
trader's positions equal the gateway account's positions and the fills the gateway made; every
last-trade update the gateway sent (before and after the expiry) is in the trades stream once.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.conftest import Processes, RedisServer, wait_for
from tests.e2e.pipeline_support import entries, trades_once
from tests.e2e.test_chaos import SEED, Chaos, _safely
from tests.e2e.test_pipeline_ibkr import gateway_env
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.core import TERMINAL

pytestmark = pytest.mark.e2e

NS = "chaos-ibkr"
KEYS = Keys(NS)
VENUE = "ibkr"
SYMBOLS = ("AAPL", "MSFT")
P = Partition(VENUE, 0)
DURATION_S = float(os.environ.get("TICKPIPE_CHAOS_IBKR_S", "45"))
# What is done when, as drawn fractions of the run: (phase, earliest, latest).
PHASES = (
    ("expire", 0.15, 0.25),  # the brokerage session expires
    ("lost", 0.35, 0.45),  # the next order POST's answer is lost after the order is placed
    ("trader", 0.65, 0.75),  # kill -9 the trader right after it wrote an intent
)
STAGES = ("ingestor", "processor", "trader")


def _mock(port: int, path: str, *, post: bool = False) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method="POST" if post else "GET"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def _nonzero(positions: dict[str, Any]) -> dict[str, Decimal]:
    out = {s: Decimal(str(q)) for s, q in positions.items() if ":" not in s}
    return {s: q for s, q in out.items() if q}


def _trader_positions(client: Any) -> dict[str, Decimal]:
    return _nonzero(decode_fields(client.hgetall(KEYS.positions(VENUE))))


class IbkrChaos(Chaos):
    """The running IBKR pipeline (one processor, one partition) and what was done to it."""

    keys = KEYS
    venue = VENUE
    partitions = [P]

    def __init__(
        self, server: RedisServer, procs: Processes, ports: tuple[int, int], truth: Path
    ) -> None:
        super().__init__(server, procs)
        self.port, self.control_port = ports  # the gateway's; the fault plan's (/_mock/faults)
        self.truth = truth
        self.lost: dict[str, Any] = {}
        #: cOIDs of the intents recorded but not placed at the gateway when the trader died.
        self.unplaced_at_kill: set[str] = set()
        self.held: str = ""  # the cOID whose POST the gateway held unexecuted at the kill

    def start(self, name: str) -> None:
        self.stages[name] = self.procs.start(
            name, "-m", f"tickpipe.{name}", env={"TICKPIPE_INSTANCE": name[:4]}
        )

    def truth_events(self, ev: str) -> list[dict[str, Any]]:
        return read_ground_truth(self.truth).events(ev) if self.truth.exists() else []

    def expire(self) -> None:
        """Expire the session; wait until it is re-authenticated and market data flows again."""
        expired = _mock(self.port, "/_mock/ibkr/expire", post=True)
        assert expired["authenticated"] is False, expired
        self.note("brokerage session expired")
        sent = len(self.truth_events("ibkr_last_sent"))

        def flowing() -> bool:
            session = _mock(self.port, "/_mock/ibkr/status")["session"]
            return session["authenticated"] and len(self.truth_events("ibkr_last_sent")) > sent

        wait_for(flowing, timeout_s=30, what="re-authentication and market data again")
        self.note("session re-authenticated, market data flows again")

    def lose_answer(self, rng: random.Random) -> None:
        """Lose the answer to the next order POST (placed at the gateway, then a 504)."""
        hang_s = rng.uniform(0.5, 3.0)
        fault = {"type": "order_error", "kind": "rest", "path": "/orders", "mode": "lost",
                 "hang": hang_s}  # fmt: skip
        _mock_post(self.control_port, "/_mock/faults", fault)
        self.note(f"the next order POST's answer is lost (504 after {hang_s:.2f} s)")
        hits = len(self.truth_events("fault_hit"))
        wait_for(lambda: len(self.truth_events("fault_hit")) > hits, timeout_s=30,
                 what="an order POST to lose")  # fmt: skip
        self.lost = self.truth_events("fault_hit")[-1]
        self.note(f"lost the answer to {self.lost.get('client_order_id', self.lost)}")

    def with_event(self, *events: str) -> set[str]:
        """The client order ids with an ``{V}:orders`` entry of one of ``events``."""
        orders = _safely(lambda: self.client.xrange(KEYS.orders(VENUE), "-", "+")) or []
        fields = [decode_fields(f) for _, f in orders]
        return {f["client_order_id"] for f in fields if f.get("event") in events}

    def settled(self, cids: set[str]) -> bool:
        """Whether each of ``cids`` is placed at the gateway or settled without an order."""
        placed = {str(o["cOID"]) for o in self.truth_events("ibkr_order")}
        return cids <= placed | self.with_event("not_found", "rejected")

    def kill_mid_flow(self, rng: random.Random) -> None:
        """Hold the next order POST unexecuted; SIGKILL the trader a drawn 0-50 ms after it
        wrote a further intent (or once the hold is 3 s old); restart it after a drawn while."""
        delay_s, dead_s = rng.uniform(0.0, 0.05), rng.uniform(0.2, 1.5)
        fault = {"type": "order_error", "kind": "rest", "path": "/orders", "mode": "timeout",
                 "hang": 8.0}  # fmt: skip
        hits = len(self.truth_events("fault_hit"))
        _mock_post(self.control_port, "/_mock/faults", fault)
        wait_for(lambda: len(self.truth_events("fault_hit")) > hits, timeout_s=30,
                 what="an order POST to hold")  # fmt: skip
        self.held = str(self.truth_events("fault_hit")[-1].get("client_order_id", ""))
        before = self.intent_count()
        deadline = time.monotonic() + 3.0
        while self.intent_count() <= before and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay_s)  # the drawn moment inside the next order's flow
        self.kill("trader")
        placed = {str(o["cOID"]) for o in self.truth_events("ibkr_order")}
        self.unplaced_at_kill = self.with_event("intent") - placed
        self.note(
            f"trader killed {delay_s * 1000:.0f} ms after an intent with {self.held} held, "
            f"dead {dead_s:.2f} s; recorded, not placed: {sorted(self.unplaced_at_kill)}"
        )
        time.sleep(dead_s)  # the drawn outage itself
        self.start("trader")


def _mock_post(port: int, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.mark.timeout(DURATION_S + 180)
def test_ibkr_chaos_expiry_lost_answer_and_trader_kill_keep_every_guarantee(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    truth_path = tmp_path / "ground-truth.jsonl"
    _, control_port = processes.start_mock(
        "--ibkr-port", "0", "--seed", str(SEED), "--rate", "30",
        "--ground-truth", str(truth_path),
    )  # fmt: skip
    port = json.loads((tmp_path / "mock.ready.json").read_text())["ibkr_port"]
    processes.point_stages(
        redis_server.url, NS, VENUE, SYMBOLS,
        **gateway_env(port),
        TICKPIPE_ORDER_QTY="1",
        TICKPIPE_ORDER_TYPE="LIMIT",
        TICKPIPE_MAX_POSITION="2",
        TICKPIPE_RECONCILE_EVERY_S="2",
        # A decision is placed only while it is no older than this (the kill's restart, the
        # lease's expiry and the held POST take several seconds on a loaded machine).
        TICKPIPE_MAX_PRICE_AGE_S="30",
    )  # fmt: skip
    chaos = IbkrChaos(redis_server, processes, (port, control_port), truth_path)
    plan = chaos.plan(rng, PHASES, DURATION_S, "TICKPIPE_CHAOS_IBKR_S")

    def act(what: str) -> None:
        if what == "expire":
            chaos.expire()
        elif what == "lost":
            chaos.lose_answer(rng)
        else:
            chaos.kill_mid_flow(rng)

    for name in STAGES:
        chaos.start(name)
    client = chaos.client
    began = time.monotonic()
    try:
        wait_for(lambda: chaos.signal_count() >= 1, timeout_s=60, what="a first signal")
        chaos.play(plan, began, DURATION_S, act)
        if chaos.unplaced_at_kill:  # the restarted trader settles them before the kill switch
            wait_for(lambda: chaos.settled(chaos.unplaced_at_kill), timeout_s=90,
                     what="the restarted trader to settle the decisions the kill left")  # fmt: skip
        chaos.wind_down()
        gateway = _nonzero(_mock(port, "/_mock/ibkr/status")["positions"])
        wait_for(lambda: _trader_positions(client) == gateway, timeout_s=40,
                 what="the trader's positions to equal the gateway's account")  # fmt: skip
        for name in ("processor", "trader"):
            assert chaos.stages[name].stop() == 0, chaos.stages[name].tail()
    except AssertionError:
        print(processes.dump_logs())
        raise
    print(f"ibkr chaos run: {time.monotonic() - began:.1f} s, seed {SEED}")

    truth = read_ground_truth(truth_path)
    placed = Counter(str(o["cOID"]) for o in truth.events("ibkr_order"))
    # No order twice: the gateway placed each cOID once.
    assert {c: n for c, n in placed.items() if n > 1} == {}, "an order was placed twice"

    # Every signal's decision executed once, or refused (risk check, or a dead letter).
    signals = [Signal.from_fields(f) for _, f in entries(client, KEYS.signals(P))]
    by_cid = {client_order_id_for(s.signal_id): s for s in signals if s.action == "place"}
    assert len(by_cid) >= 3, "too few decisions to judge"
    order_events = [e for _, e in entries(client, KEYS.orders(VENUE))]
    refused = {
        e["client_order_id"] for e in order_events
        if e["event"] == "rejected" and e.get("stage") == "risk"
    }  # fmt: skip
    dead = {
        e.get("client_order_id", "") for _, e in entries(client, KEYS.trader_dead_letters(VENUE))
    }
    assert sorted(set(placed) - set(by_cid)) == [], "an order the signals do not explain"
    assert sorted(set(placed) & refused) == [], "refused by the risk check, yet placed"
    assert sorted(set(placed) & dead) == [], "dead-lettered, yet placed"
    dropped = set(by_cid) - set(placed) - refused - dead
    unexplained = [
        (e["client_order_id"], e["event"], e.get("stage"), e.get("source"), e.get("reason"))
        for e in order_events
        if e.get("client_order_id") in dropped
    ]
    assert unexplained == [], "decisions neither placed nor refused (dropped silently)"
    assert placed, "no order reached the gateway"
    not_found = {e["client_order_id"] for e in order_events if e["event"] == "not_found"}
    assert sorted(not_found - dead) == [], "a decision settled not executed without a dead letter"

    # Every placed order ends known to the trader with the gateway's filled quantity.
    fills: dict[str, Decimal] = {}
    positions: dict[str, Decimal] = {}
    for fill in truth.events("ibkr_fill"):
        size = Decimal(str(fill["size"]))
        fills[fill["order_ref"]] = fills.get(fill["order_ref"], Decimal(0)) + size
        signed = size if fill["side"] == "B" else -size
        positions[fill["symbol"]] = positions.get(fill["symbol"], Decimal(0)) + signed
    for cid in placed:
        raw = client.get(KEYS.intent(VENUE, cid))
        assert raw is not None, f"an order at the gateway the trader does not know: {cid}"
        state = orjson.loads(raw)["state"]
        assert state["status"] in TERMINAL, (cid, state)
        assert Decimal(state["filled_qty"]) == fills.get(cid, Decimal(0)), (cid, state)
    trader = _trader_positions(client)
    assert trader == gateway == {s: q for s, q in positions.items() if q}

    # The faults happened, and each was survived: data after the expiry, the lost answer settled.
    expiries = truth.events("ibkr_session_expired")
    if any(what == "expire" for what, _ in plan):
        assert expiries, "the session never expired"
        after = [o for o in truth.events("ibkr_order") if o["ts"] > expiries[0]["ts"]]
        assert after, "no order placed after the session expired"
    if any(what == "lost" for what, _ in plan):
        lost = str(chaos.lost["client_order_id"])
        assert placed.get(lost) == 1, (lost, placed.get(lost))
        events = [e["event"] for e in order_events if e.get("client_order_id") == lost]
        assert not {"rejected", "not_found", "unknown"} & set(events), (lost, events)
    if any(what == "trader" for what, _ in plan):
        # Every decision the kill left recorded but unplaced was placed once after the restart.
        assert chaos.held in chaos.unplaced_at_kill, (chaos.held, chaos.unplaced_at_kill)
        # ... or cancelled by the trader itself first (a position-limit breach cancels the
        # working orders of the symbol, queued ones included), and then never placed.
        cancelled = {e["client_order_id"] for e in order_events if e["event"] == "cancel_requested"}
        counts = {
            cid: placed.get(cid, 0) or (-1 if cid in cancelled else 0)
            for cid in sorted(chaos.unplaced_at_kill)
        }
        assert 1 in counts.values(), f"no decision the kill left was placed: {counts}"
        why = {
            cid: [(e["event"], e.get("stage"), e.get("source"), e.get("reason")) for e in
                  order_events if e.get("client_order_id") == cid]
            for cid, n in counts.items() if n not in (1, -1)
        }  # fmt: skip
        assert set(counts.values()) <= {1, -1}, f"not placed exactly once: {counts} {why}"
    seen = {(t.symbol, int(t.trade_id)) for t in trades_once(client, KEYS, P)}
    sent = {
        (e["symbol"], int(e["updated"]))
        for e in truth.events("ibkr_last_sent")
        if not str(e["price"]).startswith("C")
    }
    assert sorted(sent - seen) == [], "last-trade updates the gateway sent are missing"
    outcomes = Counter((e["event"], e.get("source", "")) for e in order_events)
    print(
        f"seed {SEED}: signals {len(signals)}, placing {len(by_cid)}, placed {len(placed)}, "
        f"risk refusals {len(refused)}, dead letters {len(dead)}, expiries {len(expiries)}, "
        f"outcomes {dict(outcomes)}, positions {trader}"
    )
