"""Chaos end to end: kill -9 stages and restart Redis mid-run, then compare with the ground truth.

A real ``redis-server`` (AOF), the mock exchange with a fault plan on order entry (an error
answer, a lost answer, a timeout), the ingestor, two processor members over two partitions, and
the trader (LIMIT orders by default, ``TICKPIPE_CHAOS_ORDER_TYPE``) run for ``TICKPIPE_CHAOS_S``
seconds (default 60). On a seeded schedule (``TICKPIPE_CHAOS_SEED``) one processor member holding
leases, the ingestor and the trader (as a signal arrives) are each killed with SIGKILL and
restarted, and Redis is stopped and started again on the same port and data directory (AOF).
Then the kill switch cancels every working order, the input stops, everything drains, and:

1. every trade the mock sent is in the trades streams exactly once;
2. trades, signals and final bars equal a single-member replay of the same ``raw`` streams
   (:func:`processor.core.process_batch` run in-process);
3. every signal led to at most one order request at the venue; every accepted order is known to
   the trader in the final state the venue reports (``order.status``), none orphaned; the
   trader's positions equal the venue's fills;
4. the killed member's partitions were taken over within two lease periods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from common.names import GROUP_PROCESSOR, GROUP_TRADER, Keys, Partition
from common.schema import Bar, Signal, Trade, decode_fields
from common.settings import load_settings
from common.units import client_order_id_for
from mock_ws.ground_truth import read_ground_truth
from processor.core import PartitionState, process_batch
from processor.lanes import decode_entries
from tests.e2e.conftest import Processes, RedisServer, Stage, group_idle, start_redis, wait_for
from trader.control import set_kill_switch
from trader.core import TERMINAL
from venues.binance.orders import result_of, status_params
from venues.binance.ws_api import BinanceWsApi

pytestmark = pytest.mark.e2e

NS = "chaos"
KEYS = Keys(NS)
VENUE = "binance"
SYMBOLS = ("BTCUSDT", "ETHUSDT")  # two shards: one symbol each
SHARDS = 2
PARTITIONS = [Partition(VENUE, s) for s in range(SHARDS)]
LEASE_S = 5.0  # the processor's lease period
DURATION_S = float(os.environ.get("TICKPIPE_CHAOS_S", "60"))
SEED = int(os.environ.get("TICKPIPE_CHAOS_SEED", "5"))
ORDER_TYPE = os.environ.get("TICKPIPE_CHAOS_ORDER_TYPE", "LIMIT")
KEY, SECRET = "chaos-key-123", "chaos-secret-456"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return [(_text(i), decode_fields(f)) for i, f in client.xrange(stream)]


def _safely(fn: Any) -> Any:
    """Call ``fn``; a Redis that is (re)starting reads as "not yet"."""
    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
        return None


class Chaos:
    """The running pipeline and what was done to it."""

    def __init__(self, server: RedisServer, procs: Processes) -> None:
        self.server = server
        self.procs = procs
        self.client = server.client()
        self.stages: dict[str, Stage] = {}
        self.log: list[str] = []
        self.takeovers: list[float] = []

    def start(self, name: str) -> None:
        module = "processor" if name.startswith("proc") else name
        self.stages[name] = self.procs.start(name, "-m", module, env={"TICKPIPE_INSTANCE": name})

    def kill(self, name: str) -> None:
        stage = self.stages[name]
        assert stage.proc.poll() is None, f"{name} died on its own:\n{stage.tail()}"
        stage.proc.send_signal(signal.SIGKILL)
        stage.proc.wait(10)
        self.log.append(f"{time.monotonic():.1f} kill -9 {name}")

    def leases(self) -> dict[str, str]:
        keys = [KEYS.lease(p) for p in PARTITIONS] + [KEYS.venue_lease(VENUE)]
        values = _safely(lambda: self.client.mget(keys)) or [None] * len(keys)
        return {k: _text(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def kill_processor(self, rng: random.Random) -> None:
        """Kill a member holding leases; time until the other member holds all of them."""
        held = self.leases()
        holders = sorted(set(held.values()))
        victim = rng.choice(holders) if holders else "proc-1"
        survivor = "proc-2" if victim == "proc-1" else "proc-1"
        lost = [k for k, v in held.items() if v == victim]
        self.kill(victim)
        started = time.monotonic()

        def taken() -> bool:
            now = self.leases()
            return all(now.get(k) == survivor for k in lost)

        wait_for(taken, timeout_s=4 * LEASE_S, what=f"{survivor} to take over {lost}")
        self.takeovers.append(time.monotonic() - started)
        self.log.append(f"takeover of {lost} by {survivor} in {self.takeovers[-1]:.2f} s")
        self.start(victim)

    def signal_count(self) -> int:
        return sum(_safely(lambda p=p: self.client.xlen(KEYS.signals(p))) or 0 for p in PARTITIONS)

    def restart(self, name: str, rng: random.Random) -> None:
        if name == "trader":  # kill it as a signal arrives, so an order is likely in flight
            before = self.signal_count()
            with contextlib.suppress(AssertionError):
                wait_for(lambda: self.signal_count() > before, timeout_s=10, what="a signal")
        self.kill(name)
        time.sleep(rng.uniform(0.2, 1.5))  # the stage stays dead a while
        self.start(name)

    def restart_redis(self, rng: random.Random) -> None:
        """Stop redis-server (it writes its AOF), then start it on the same port and data."""
        self.server.proc.terminate()
        self.server.proc.wait(20)
        self.log.append(f"{time.monotonic():.1f} redis stopped")
        time.sleep(rng.uniform(0.5, 2.0))
        fresh = start_redis(self.server.data_dir, self.server.port)
        self.server.proc = fresh.proc
        self.client = self.server.client()
        self.log.append(f"{time.monotonic():.1f} redis started")


def _fault_plan(path: Path, rng: random.Random) -> Path:
    """Order-entry faults: an error answer, a lost answer (executed) and a timeout."""
    faults = [
        {"type": "order_error", "mode": "lost", "at": rng.uniform(5, DURATION_S * 0.3)},
        {"type": "order_error", "mode": "error", "executed": True,
         "at": rng.uniform(DURATION_S * 0.3, DURATION_S * 0.5)},
        {"type": "order_error", "mode": "timeout",
         "at": rng.uniform(DURATION_S * 0.5, DURATION_S * 0.7)},
        {"type": "order_error", "mode": "error",
         "at": rng.uniform(DURATION_S * 0.6, DURATION_S * 0.8)},
    ]  # fmt: skip
    path.write_text(json.dumps(faults))
    return path


async def _kill_switch(settings: Any) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await set_kill_switch(client, settings, True)
    finally:
        await client.aclose()


async def _venue_orders(settings: Any, orders: list[dict[str, Any]]) -> dict[str, Any]:
    """Ask the venue (``order.status``) for the final state of each order."""
    api = BinanceWsApi(settings.binance_ws_api_url)
    out = {}
    try:
        for order in orders:
            params = status_params(
                order["symbol"], order["client_order_id"], api_key=KEY, api_secret=SECRET,
                timestamp_ms=time.time_ns() // 1_000_000,
            )  # fmt: skip
            out[order["client_order_id"]] = result_of(await api.status(params))
    finally:
        await api.aclose()
    return out


def _replay(settings: Any, client: redis.Redis, partition: Partition) -> Any:
    """Run the processor's pure core over a partition's whole raw stream, one member, no crash."""
    state = PartitionState.from_settings(settings, str(partition), VENUE)
    trades: list[Trade] = []
    bars: list[Bar] = []
    signals: list[Signal] = []
    entries = client.xrange(KEYS.raw(partition))
    for start in range(0, len(entries), 500):
        out = process_batch(state, decode_entries(entries[start : start + 500]), 0)
        trades += out.trades
        bars += out.bars
        signals += out.signals
    return trades, bars, signals


def _final_bars(bars: list[Bar]) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    out: dict[tuple[str, str, int], tuple[Any, ...]] = {}
    for bar in bars:
        if bar.final:
            key = (bar.symbol, bar.interval, bar.ts_open)
            out[key] = (bar.open, bar.high, bar.low, bar.close, Decimal(bar.volume), bar.trades)
    return out


@pytest.mark.timeout(DURATION_S + 240)
def test_chaos_kills_and_a_redis_restart_keep_every_guarantee(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    truth_path = tmp_path / "ground-truth.jsonl"
    processes.env.update(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)
    faults = _fault_plan(tmp_path / "faults.json", rng)
    _, port = processes.start_mock(
        "--seed", str(SEED), "--rate", "25", "--symbols", ",".join(SYMBOLS),
        "--ground-truth", str(truth_path), "--faults", str(faults),
    )  # fmt: skip
    processes.env.update(
        REDIS_URL=redis_server.url,
        TICKPIPE_NAMESPACE=NS,
        TICKPIPE_SYMBOLS=",".join(SYMBOLS),
        TICKPIPE_SHARDS=str(SHARDS),
        TICKPIPE_BINANCE_WS_URL=f"ws://127.0.0.1:{port}",
        TICKPIPE_BINANCE_WS_API_URL=f"ws://127.0.0.1:{port}/ws-api/v3",
        TICKPIPE_BINANCE_REST_URL=f"http://127.0.0.1:{port}",
        TICKPIPE_HYSTERESIS_BPS="1",
        TICKPIPE_ORDER_QTY="0.01",
        TICKPIPE_MAX_POSITION="1000",
        TICKPIPE_MAX_ORDERS_PER_S="50",
        TICKPIPE_ORDER_TYPE=ORDER_TYPE,
        TICKPIPE_STRATEGIES="threshold_cross,rapid_move",
        TICKPIPE_RAPID_MOVE_PCT="0.05",
    )
    chaos = Chaos(redis_server, processes)
    for name in ("ingestor", "proc-1", "proc-2", "trader"):
        chaos.start(name)
    began = time.monotonic()
    try:
        wait_for(lambda: len(chaos.leases()) == SHARDS + 1, timeout_s=30,
                 what="every lane to be leased")  # fmt: skip
        plan = [
            ("processor", rng.uniform(0.10, 0.20)),
            ("ingestor", rng.uniform(0.30, 0.40)),
            ("trader", rng.uniform(0.50, 0.60)),
            ("redis", rng.uniform(0.70, 0.80)),
        ]
        for what, at in plan:
            delay = began + at * DURATION_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if what == "processor":
                chaos.kill_processor(rng)
            elif what == "redis":
                chaos.restart_redis(rng)
            else:
                chaos.restart(what, rng)
        rest = began + DURATION_S - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        client = chaos.client
        # The kill switch: no new order, every working one cancelled; then nothing changes at
        # the venue any more, and the input stops while the processors and trader drain.
        settings = load_settings(processes.env, dotenv_path=None)
        asyncio.run(_kill_switch(settings))
        wait_for(lambda: _safely(lambda: client.scard(KEYS.working_orders(VENUE)) == 0),
                 timeout_s=30, what="the kill switch to cancel every working order")  # fmt: skip
        assert chaos.stages["ingestor"].stop() == 0, chaos.stages["ingestor"].tail()
        streams = [(KEYS.raw(p), GROUP_PROCESSOR) for p in PARTITIONS]
        streams += [(KEYS.private_raw(VENUE), GROUP_PROCESSOR)]
        streams += [(KEYS.signals(p), GROUP_TRADER) for p in PARTITIONS]
        streams += [(KEYS.order_updates(VENUE), GROUP_TRADER)]
        for stream, group in streams:
            wait_for(lambda s=stream, g=group: _safely(lambda: group_idle(client, s, g)),
                     timeout_s=60, what=f"{group} to drain {stream}")  # fmt: skip
        for name in ("proc-1", "proc-2", "trader"):
            assert chaos.stages[name].stop() == 0, chaos.stages[name].tail()
    except AssertionError:
        print("\n".join(chaos.log))
        print(processes.dump_logs())
        raise
    print("\n".join(chaos.log))
    print(f"chaos run: {time.monotonic() - began:.1f} s, seed {SEED}")

    truth = read_ground_truth(truth_path)

    # 1. Every trade the mock sent is in the trades streams exactly once.
    live_trades = {
        p: [Trade.from_fields(f) for _, f in _entries(client, KEYS.trades(p))] for p in PARTITIONS
    }
    seen = Counter((t.symbol, int(t.trade_id)) for ts in live_trades.values() for t in ts)
    assert [k for k, n in seen.items() if n > 1] == []
    sent = {(t["symbol"], int(t["trade_id"])) for t in truth.trades_sent()}
    assert len(sent) > DURATION_S * 10
    assert sorted(sent - set(seen)) == [], "trades the mock sent are missing"

    # 2. One member without crashes, replayed over the same raw, gives the same outputs.
    for p in PARTITIONS:
        trades, bars, signals = _replay(settings, client, p)
        assert [(t.symbol, t.trade_id, t.price, t.qty) for t in live_trades[p]] == [
            (t.symbol, t.trade_id, t.price, t.qty) for t in trades
        ], p
        live_bars: list[Bar] = []
        for interval in ("1s", "1m"):
            live_bars += [Bar.from_fields(f) for _, f in _entries(client, KEYS.bars(p, interval))]
        assert _final_bars(live_bars) == _final_bars(bars), p
        live_signals = [Signal.from_fields(f) for _, f in _entries(client, KEYS.signals(p))]
        assert [s.signal_id for s in live_signals] == [s.signal_id for s in signals], p

    # 3. At most one order per signal, none orphaned, positions equal the venue's fills.
    signals = [
        Signal.from_fields(f) for p in PARTITIONS for _, f in _entries(client, KEYS.signals(p))
    ]
    assert len(signals) >= 2
    by_cid = {client_order_id_for(s.signal_id): s for s in signals if s.action == "place"}
    requests = Counter(o["client_order_id"] for o in truth.orders())
    assert {cid: n for cid, n in requests.items() if n > 1} == {}, "an order was sent twice"
    assert set(requests) <= set(by_cid), "an order the signals do not explain"
    accepted = [o for o in truth.orders() if o["status"] != "REJECTED"]
    assert accepted, "no order reached the venue"
    at_venue = asyncio.run(_venue_orders(settings, accepted))
    expected: dict[str, Decimal] = {}
    for order in accepted:
        cid = order["client_order_id"]
        raw = client.get(KEYS.intent(VENUE, cid))
        assert raw is not None, f"orphan order at the venue: {order}"
        intent = orjson.loads(raw)
        venue = at_venue[cid]
        assert intent.get("resolution") is None, (order, intent)
        state = intent["state"]
        assert state["status"] == venue["status"] in TERMINAL, (venue, intent)
        assert Decimal(state["filled_qty"]) == Decimal(venue["executedQty"]), (venue, intent)
        qty = Decimal(venue["executedQty"]) * (1 if venue["side"] == "BUY" else -1)
        expected[venue["symbol"]] = expected.get(venue["symbol"], Decimal(0)) + qty
    assert client.scard(KEYS.working_orders(VENUE)) == 0
    positions = decode_fields(client.hgetall(KEYS.positions(VENUE)))
    for symbol, qty in expected.items():
        assert Decimal(positions.get(symbol, "0")) == qty, (symbol, positions)
    outcomes = Counter(e["event"] for _, e in _entries(client, KEYS.orders(VENUE)))
    assert outcomes["unknown"] == 0, outcomes
    handled = {e.get("client_order_id") for _, e in _entries(client, KEYS.orders(VENUE))}
    assert set(by_cid) <= handled, "a signal without an outcome"
    statuses = Counter(o["status"] for o in at_venue.values())
    refusals = Counter(
        e.get("reason", "")[:50] for _, e in _entries(client, KEYS.orders(VENUE))
        if e["event"] == "rejected"
    )  # fmt: skip

    hits = Counter(e.get("type", "?") for e in truth.events("fault_hit"))
    cancels = sum(s.action == "cancel" for s in signals)
    print(f"trades {len(seen)}, signals {len(signals)} ({cancels} cancel), orders {len(accepted)} "
          f"{dict(statuses)}, outcomes {dict(outcomes)}, fault hits {dict(hits)}, "
          f"refusals {dict(refusals)}")  # fmt: skip

    # 4. The killed member's lanes were taken over within two lease periods.
    assert chaos.takeovers and max(chaos.takeovers) <= 2 * LEASE_S, chaos.takeovers
