"""Chaos end to end: kill -9, freeze and crash real processes, then compare with the ground truth.

A real ``redis-server`` (AOF, ``appendfsync everysec``), the mock exchange with a fault plan on
order entry (an error answer, a lost answer, a timeout), the ingestor, two processor members over
two partitions (their ``REDIS_URL`` sets ``socket_timeout=30``), and the trader (LIMIT orders by
default, ``TICKPIPE_CHAOS_ORDER_TYPE``; position limit ``TICKPIPE_CHAOS_MAX_POSITION``, low enough
that a signal is refused now and then) run for ``TICKPIPE_CHAOS_S`` seconds (default 90). On a
schedule drawn from ``TICKPIPE_CHAOS_SEED`` (random unless set; it and every drawn timing are
printed, so a failure can be replayed), in this order (:data:`PHASES`):

* a processor member holding leases is killed with SIGKILL and restarted;
* the ingestor is killed and restarted;
* all four stages (ingestor, both processor members, trader) are killed at the same moment, dead
  for a drawn 1-5 s, and restarted;
* the trader is killed as a signal arrives, and restarted;
* a processor member holding leases is frozen with SIGSTOP while its blocking read is pending,
  and thawed with SIGCONT within a drawn 0-40 ms of the other member taking over its leases;
* Redis is stopped (SIGTERM) and started again on the same port and data directory;
* all four stages are killed at once again;
* Redis is killed after about a drawn second of writes (at least 20 raw entries, and an order if
  one comes within 2 s more), the AOF is cut back to where it stood before them (an OS crash
  under ``appendfsync everysec``), and Redis is started again on the same port and directory.

Then the kill switch cancels every working order, the input stops, everything drains, and:

1. every trade the mock sent is in the trades streams exactly once;
2. trades, signals and final bars equal a single-member replay of the same ``raw`` streams
   (:func:`processor.core.process_batch` run in-process);
3. every decision is executed once. After the AOF cut the streams hold what Redis kept plus what
   was derived again from ``raw`` (the same ids), so the assertions are about the final state:
   the *signal entries* are the entries of the final signals streams, and each signal id is in
   exactly one of them. Every placing signal's client order id was received by the mock exactly
   once (an ``order`` record, or the ``fault_hit`` of a request a fault kept from executing), or
   the risk check refused it (a ``rejected`` entry with ``stage=risk`` and its reason in
   ``{V}:orders``), never both: placing signals = orders placed + refusals, and no order the
   signals do not explain. Every signal has an outcome in ``{V}:orders``; the trader dead-lettered
   nothing; every accepted order is known to the trader in the final state the venue reports
   (``order.status``), none orphaned (orders whose intent Redis lost are adopted); the trader's
   positions equal the venue's fills;
4. the killed or frozen member's partitions were taken over within two lease periods.
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
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from tests.e2e.chaos_support import (
    blocked_reader,
    crash_with_aof_cut,
    freeze_through_takeover,
    mark_aof,
)
from tests.e2e.conftest import (
    Processes,
    RedisServer,
    Stage,
    group_idle,
    mock_binance_env,
    start_redis,
    wait_for,
)
from tests.e2e.pipeline_support import entries
from tickpipe.common.names import GROUP_PROCESSOR, GROUP_TRADER, Keys, Partition
from tickpipe.common.schema import Bar, Signal, Trade, decode_fields
from tickpipe.common.settings import load_settings
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.lanes import decode_entries
from tickpipe.trader.control import set_kill_switch
from tickpipe.trader.core import TERMINAL
from tickpipe.venues.binance.orders import result_of, status_params
from tickpipe.venues.binance.ws_api import BinanceWsApi

pytestmark = pytest.mark.e2e

NS = "chaos"
KEYS = Keys(NS)
VENUE = "binance"
SYMBOLS = ("BTCUSDT", "ETHUSDT")  # two shards: one symbol each
SHARDS = 2
PARTITIONS = [Partition(VENUE, s) for s in range(SHARDS)]
LEASE_S = 5.0  # the processor's lease period
DURATION_S = float(os.environ.get("TICKPIPE_CHAOS_S", "90"))
SEED = int(os.environ.get("TICKPIPE_CHAOS_SEED", str(random.randrange(1 << 30))))
# What is done when, as drawn fractions of the run: (phase, earliest, latest).
PHASES = (
    ("processor", 0.05, 0.09),  # kill -9 a member holding leases
    ("ingestor", 0.13, 0.17),  # kill -9 and restart
    ("all", 0.21, 0.27),  # kill -9 all four stages at once, dead 1-5 s
    ("trader", 0.33, 0.37),  # kill -9 as a signal arrives
    ("freeze", 0.42, 0.48),  # SIGSTOP a lease holder, SIGCONT right after the takeover
    ("redis", 0.54, 0.58),  # SIGTERM redis-server, start it again
    ("all", 0.63, 0.69),  # all four again
    ("aof", 0.74, 0.80),  # SIGKILL redis-server, cut the last second off its AOF
)
# Only these phases (comma-separated names of PHASES), to replay or bisect one; all by default.
ONLY = (
    set(os.environ["TICKPIPE_CHAOS_PHASES"].split(","))
    if "TICKPIPE_CHAOS_PHASES" in os.environ
    else None
)
# Low enough that the position limit refuses a signal now and then: each refusal is accounted for.
MAX_POSITION = os.environ.get("TICKPIPE_CHAOS_MAX_POSITION", "0.03")
ORDER_TYPE = os.environ.get("TICKPIPE_CHAOS_ORDER_TYPE", "LIMIT")
KEY, SECRET = "chaos-key-123", "chaos-secret-456"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _safely(fn: Any) -> Any:
    """Call ``fn``; a Redis that is (re)starting reads as "not yet"."""
    try:
        return fn()
    except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
        return None


class Chaos:
    """The running pipeline and what was done to it.

    Its namespace's keys, its venue and partitions are class attributes, so that a subclass
    (another venue's pipeline) reads its own.
    """

    keys = KEYS
    venue = VENUE
    partitions = PARTITIONS

    def __init__(self, server: RedisServer, procs: Processes) -> None:
        self.server = server
        self.procs = procs
        self.client = server.client()
        self.stages: dict[str, Stage] = {}
        self.log: list[str] = []
        self.takeovers: list[float] = []
        #: Client order ids whose intent an AOF cut took away: the trader lost its memory of them.
        self.cut_intents: set[str] = set()
        #: Decisions whose ``placed_again`` entry the cut took away (their intent stayed).
        self.cut_placed_again: set[str] = set()

    def start(self, name: str) -> None:
        module = "processor" if name.startswith("proc") else name
        env = {"TICKPIPE_INSTANCE": name}
        if module == "processor":  # a frozen member's connection outlives its freeze
            env["REDIS_URL"] = self.server.url + "?socket_timeout=30"
        self.stages[name] = self.procs.start(name, "-m", f"tickpipe.{module}", env=env)

    def note(self, line: str) -> None:
        """Log one thing done (or drawn), with the moment, for the replay of a failure."""
        self.log.append(f"{time.monotonic():.1f} {line}")
        print(self.log[-1], flush=True)

    def plan(
        self,
        rng: random.Random,
        phases: Sequence[tuple[str, float, float]],
        duration_s: float,
        knob: str,
    ) -> list[tuple[str, float]]:
        """Draw the moment of each of ``phases`` (fractions of the run) from ``rng``; note the
        plan and return it in seconds into the run. Only the phases ``TICKPIPE_CHAOS_PHASES``
        names are kept (every one when it is unset); ``knob`` names the run length's setting."""
        drawn = [(what, rng.uniform(low, high) * duration_s) for what, low, high in phases]
        plan = [(what, at) for what, at in drawn if ONLY is None or what in ONLY]
        self.note(
            f"TICKPIPE_CHAOS_SEED={SEED} {knob}={duration_s:g}: "
            + ", ".join(f"{what} at {at:.1f} s" for what, at in plan)
        )
        return plan

    def play(
        self, plan: list[tuple[str, float]], began: float, duration_s: float, act: Any
    ) -> None:
        """Call ``act(phase)`` at each moment of ``plan`` after ``began`` (monotonic); then
        wait out the run's ``duration_s``."""
        for what, at in plan:
            delay = began + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            act(what)
        rest = began + duration_s - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def wind_down(self) -> None:
        """Check that every stage still runs; turn the kill switch on and wait until the trader
        read every signal and cancelled every working order; stop the input (the ingestor) and
        wait until the processors and the trader handled everything buffered."""
        for name, stage in self.stages.items():
            assert stage.proc.poll() is None, f"{name} died on its own:\n{stage.tail()}"
        keys, venue = self.keys, self.venue
        signals = [keys.signals(p) for p in self.partitions]
        asyncio.run(_kill_switch(load_settings(self.procs.env, dotenv_path=None)))
        # Every signal read first: a decision taken just before the switch is an order to cancel
        # (checked before, the set could be empty only because those orders were still on
        # their way, and the input stopped before their fills could stream in).
        wait_for(lambda: _safely(lambda: all(group_idle(self.client, s, GROUP_TRADER)
                                             for s in signals)
                                 and self.client.scard(keys.working_orders(venue)) == 0),
                 timeout_s=30, what="the kill switch to cancel every working order")  # fmt: skip
        assert self.stages["ingestor"].stop() == 0, self.stages["ingestor"].tail()
        streams = [(keys.raw(p), GROUP_PROCESSOR) for p in self.partitions]
        streams += [(keys.private_raw(venue), GROUP_PROCESSOR)]
        streams += [(s, GROUP_TRADER) for s in signals]
        streams += [(keys.order_updates(venue), GROUP_TRADER)]
        for stream, group in streams:
            wait_for(lambda s=stream, g=group: _safely(lambda: group_idle(self.client, s, g)),
                     timeout_s=60, what=f"{group} to drain {stream}")  # fmt: skip

    def kill(self, name: str) -> None:
        stage = self.stages[name]
        assert stage.proc.poll() is None, f"{name} died on its own:\n{stage.tail()}"
        stage.proc.send_signal(signal.SIGKILL)
        stage.proc.wait(10)
        self.note(f"kill -9 {name}")

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
        self.note(f"takeover of {lost} by {survivor} in {self.takeovers[-1]:.2f} s")
        self.start(victim)

    def signal_count(self) -> int:
        return sum(
            _safely(lambda p=p: self.client.xlen(self.keys.signals(p))) or 0
            for p in self.partitions
        )

    def restart(self, name: str, rng: random.Random) -> None:
        if name == "trader":  # kill it as a signal arrives, so an order is likely in flight
            before = self.signal_count()
            with contextlib.suppress(AssertionError):
                wait_for(lambda: self.signal_count() > before, timeout_s=10, what="a signal")
        self.kill(name)
        dead_s = rng.uniform(0.2, 1.5)
        self.note(f"{name} dead for {dead_s:.2f} s")
        time.sleep(dead_s)  # the stage stays dead a while
        self.start(name)

    def kill_all(self, rng: random.Random) -> None:
        """SIGKILL every stage at the same moment; start them all again a drawn 1-5 s later."""
        names = ("ingestor", "proc-1", "proc-2", "trader")
        for name in names:
            stage = self.stages[name]
            assert stage.proc.poll() is None, f"{name} died on its own:\n{stage.tail()}"
        for name in names:
            self.stages[name].proc.send_signal(signal.SIGKILL)
        for name in names:
            self.stages[name].proc.wait(10)
        dead_s = rng.uniform(1.0, 5.0)
        self.note(f"kill -9 all four stages at once, dead for {dead_s:.2f} s")
        time.sleep(dead_s)  # the drawn outage itself
        for name in names:
            self.start(name)

    def freeze_processor(self, rng: random.Random) -> None:
        """SIGSTOP a lease holder parked in a blocking read; SIGCONT it right after the takeover."""
        held = wait_for(self.leases, timeout_s=10, what="a lease holder")
        assert isinstance(held, dict)
        victim = rng.choice(sorted(set(held.values())))
        survivor = "proc-2" if victim == "proc-1" else "proc-1"
        lost = [k for k, v in held.items() if v == victim]
        thaw_after_s = rng.uniform(0.0, 0.04)
        proc = self.stages[victim].proc
        wait_for(
            lambda: _safely(lambda: blocked_reader(self.client, proc.pid)),
            timeout_s=10,
            what=f"{victim} to block in a read",
            poll_s=0.002,
        )
        waited_s = freeze_through_takeover(
            proc, lambda: all(self.leases().get(k) == survivor for k in lost),
            thaw_after_s=thaw_after_s, timeout_s=4 * LEASE_S,
            what=f"{survivor} to take over {lost} from frozen {victim}",
        )  # fmt: skip
        self.takeovers.append(waited_s)
        self.note(
            f"SIGSTOP {victim} while blocked in a read, {survivor} took "
            f"{lost} after {waited_s:.2f} s, SIGCONT {thaw_after_s * 1000:.0f} ms later"
        )

    def stop_redis(self, rng: random.Random, *, cut_tail: bool) -> None:
        """Stop redis-server and start it again on the same port and data directory.

        ``cut_tail``: SIGKILL it after about a drawn second of writes and cut those writes off
        its AOF (an OS crash under ``appendfsync everysec``); else SIGTERM (it writes its AOF).
        """
        if cut_tail:
            window_s = rng.uniform(0.8, 1.5)
            mark = mark_aof(self.server)
            before, since = self.raw_count(), time.monotonic()
            intents = self.intent_count()
            kept, kept_again = self.intent_ids(), self.intent_ids("placed_again")

            def cut_worthy() -> bool:  # the drawn window, and an order in it if one comes soon
                waited_s = time.monotonic() - since
                order = self.intent_count() > intents or waited_s >= window_s + 2
                return waited_s >= window_s and self.raw_count() >= before + 20 and order

            wait_for(cut_worthy, timeout_s=30, what="raw entries and an order after the AOF mark")
            written, ordered = self.raw_count() - before, self.intent_count() - intents
            lost = self.intent_ids() - kept
            self.cut_intents |= lost
            self.cut_placed_again |= self.intent_ids("placed_again") - kept_again
            cut = crash_with_aof_cut(self.server, mark)
            self.note(
                f"redis killed, AOF cut by {cut} bytes: the last {time.monotonic() - since:.2f} s "
                f"(drawn window {window_s:.2f} s), {written} raw entries, {ordered} order intents "
                f"{sorted(lost)}"
            )
        else:
            self.server.proc.terminate()
            self.server.proc.wait(20)
            self.note("redis stopped")
        down_s = rng.uniform(0.5, 2.0)
        time.sleep(down_s)  # the drawn outage itself
        fresh = start_redis(self.server.data_dir, self.server.port)
        self.server.proc = fresh.proc
        self.client = self.server.client()
        self.note(f"redis started after {down_s:.2f} s, {self.raw_count()} raw entries held")

    def intent_count(self) -> int:
        orders = _safely(lambda: self.client.xrange(self.keys.orders(self.venue), "-", "+")) or []
        return sum(decode_fields(f).get("event") == "intent" for _, f in orders)

    def intent_ids(self, event: str = "intent") -> set[str]:
        """The client order ids with an ``event`` entry (``intent``, ``placed_again``...)."""
        orders = _safely(lambda: self.client.xrange(KEYS.orders(VENUE), "-", "+")) or []
        events = [decode_fields(f) for _, f in orders]
        return {e["client_order_id"] for e in events if e.get("event") == event}

    def raw_count(self) -> int:
        return sum(_safely(lambda p=p: self.client.xlen(KEYS.raw(p))) or 0 for p in PARTITIONS)


def _fault_plan(path: Path, rng: random.Random) -> tuple[Path, set[int]]:
    """Order-entry faults: an error answer, a lost answer (executed) and a timeout.

    Return the file and the ids (1, 2, ... in plan order) of the faults that keep the order
    from being executed: the mock writes no ``order`` record for those requests.
    """
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
    unexecuted = {
        n
        for n, f in enumerate(faults, 1)
        if f["mode"] == "timeout" or (f["mode"] == "error" and not f.get("executed"))
    }
    return path, unexecuted


def _about(truth: Any, order_events: list[dict[str, Any]], cids: Iterable[str]) -> list[Any]:
    """What the venue and the trader recorded of ``cids`` (for a failure's message)."""
    out: list[Any] = []
    for cid in cids:
        out.append([e for e in truth.events() if e.get("client_order_id") == cid])
        out.append([e for e in order_events if e.get("client_order_id") == cid])
    return out


def _requests(truth: Any, unexecuted: set[int]) -> Counter[str]:
    """Count the order requests the mock received, per client order id.

    Each request is an ``order`` record, or a ``fault_hit`` of a fault that kept it from being
    executed (no record); a fault that let it execute is counted by its record.
    """
    out = Counter(str(o["client_order_id"]) for o in truth.orders())
    for hit in truth.events("fault_hit"):
        if hit.get("type") == "order_error" and hit.get("id") in unexecuted:
            out[str(hit["client_order_id"])] += 1
    return out


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
def test_chaos_kills_a_freeze_and_redis_crashes_keep_every_guarantee(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    truth_path = tmp_path / "ground-truth.jsonl"
    processes.env.update(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)
    faults, unexecuted = _fault_plan(tmp_path / "faults.json", rng)
    _, port = processes.start_mock(
        "--seed", str(SEED), "--rate", "25", "--symbols", ",".join(SYMBOLS),
        "--ground-truth", str(truth_path), "--faults", str(faults),
    )  # fmt: skip
    processes.point_stages(
        redis_server.url, NS, VENUE, SYMBOLS,
        **mock_binance_env(port),
        TICKPIPE_SHARDS=str(SHARDS),
        TICKPIPE_ORDER_QTY="0.01",
        TICKPIPE_MAX_POSITION=MAX_POSITION,
        TICKPIPE_MAX_ORDERS_PER_S="50",
        TICKPIPE_ORDER_TYPE=ORDER_TYPE,
        TICKPIPE_STRATEGIES="threshold_cross,rapid_move",
        TICKPIPE_RAPID_MOVE_PCT="0.05",
    )  # fmt: skip
    chaos = Chaos(redis_server, processes)
    plan = chaos.plan(rng, PHASES, DURATION_S, "TICKPIPE_CHAOS_S")

    def act(what: str) -> None:
        if what == "processor":
            chaos.kill_processor(rng)
        elif what == "all":
            chaos.kill_all(rng)
        elif what == "freeze":
            chaos.freeze_processor(rng)
        elif what in ("redis", "aof"):
            chaos.stop_redis(rng, cut_tail=what == "aof")
        else:
            chaos.restart(what, rng)

    for name in ("ingestor", "proc-1", "proc-2", "trader"):
        chaos.start(name)
    began = time.monotonic()
    try:
        wait_for(lambda: len(chaos.leases()) == SHARDS + 1, timeout_s=30,
                 what="every lane to be leased")  # fmt: skip
        chaos.play(plan, began, DURATION_S, act)
        # The kill switch: no new order, every working one cancelled; then nothing changes at
        # the venue any more, and the input stops while the processors and trader drain.
        chaos.wind_down()
        client = chaos.client
        for name in ("proc-1", "proc-2", "trader"):
            assert chaos.stages[name].stop() == 0, chaos.stages[name].tail()
    except AssertionError:
        print(processes.dump_logs())
        raise
    print(f"chaos run: {time.monotonic() - began:.1f} s, seed {SEED}")
    settings = load_settings(processes.env, dotenv_path=None)

    truth = read_ground_truth(truth_path)

    # 1. Every trade the mock sent is in the trades streams exactly once.
    live_trades = {
        p: [Trade.from_fields(f) for _, f in entries(client, KEYS.trades(p))] for p in PARTITIONS
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
            live_bars += [Bar.from_fields(f) for _, f in entries(client, KEYS.bars(p, interval))]
        assert _final_bars(live_bars) == _final_bars(bars), p
        live_signals = [Signal.from_fields(f) for _, f in entries(client, KEYS.signals(p))]
        assert [s.signal_id for s in live_signals] == [s.signal_id for s in signals], p

    # 3. Every decision executed once. A signal id names one decision; after an AOF cut the
    # streams hold what Redis kept plus what was derived again, so "signal entries" are the
    # entries of the final signals streams, and each id must appear once among them.
    signals = [
        Signal.from_fields(f) for p in PARTITIONS for _, f in entries(client, KEYS.signals(p))
    ]
    assert len(signals) >= 2
    ids = Counter(s.signal_id for s in signals)
    assert {i: n for i, n in ids.items() if n > 1} == {}, "a signal id in two entries"
    by_cid = {client_order_id_for(s.signal_id): s for s in signals if s.action == "place"}
    executed = Counter(str(o["client_order_id"]) for o in truth.orders())
    assert {cid: n for cid, n in executed.items() if n > 1} == {}, "an order executed twice"
    # Sent twice: a request the venue refused unexecuted, then the same id again. Allowed where
    # the trader found the venue never got the decision and placed it again, once (a
    # ``placed_again`` entry), or where an AOF cut took the intent away (the trader cannot know
    # it asked before). Either way the venue executed it at most once (above), and a decision
    # it had executed would have been adopted, not resent.
    order_events = [e for _, e in entries(client, KEYS.orders(VENUE))]
    placed_again = Counter(e["client_order_id"] for e in order_events
                           if e["event"] == "placed_again")  # fmt: skip
    assert {c: n for c, n in placed_again.items() if n > 1} == {}, "placed again twice"
    requests = _requests(truth, unexecuted)
    again = set(placed_again) | chaos.cut_placed_again
    twice = {
        cid: n for cid, n in requests.items()
        if n > 1 + (cid in again) and cid not in chaos.cut_intents
    }  # fmt: skip
    assert twice == {}, ("an order was sent twice", _about(truth, order_events, twice))
    assert sorted(set(requests) - set(by_cid)) == [], "an order the signals do not explain"
    refused = {
        e["client_order_id"]: e.get("reason", "") for e in order_events
        if e["event"] == "rejected" and e.get("stage") == "risk"
    }  # fmt: skip
    assert sorted(set(refused) & set(requests)) == [], "refused by the risk check, yet sent"
    unexecuted_signals = sorted(set(by_cid) - set(requests) - set(refused))
    assert unexecuted_signals == [], "decisions neither sent nor refused (dropped)"
    assert len(by_cid) == len(requests) + len(refused)
    handled = {e.get("client_order_id") for e in order_events}
    assert sorted(set(by_cid) - handled) == [], "a signal without an order outcome"
    cancel_ids = {s.signal_id for s in signals if s.action == "cancel"}
    cancels_done = {e.get("signal_id") for e in order_events if e["event"] == "cancel_signal"}
    assert sorted(cancel_ids - cancels_done) == [], "a cancel signal without an outcome"
    not_found = {e["client_order_id"] for e in order_events if e["event"] == "not_found"}
    dead = [
        e for _, e in entries(client, KEYS.trader_dead_letters(VENUE))
        if e.get("client_order_id") not in not_found  # a decision the venue never got: reported
    ]  # fmt: skip
    assert dead == [], "the trader dead-lettered signals (an intent of another decision)"
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
    unexplained = {k: v for k, v in positions.items() if ":" not in k and k not in expected}
    assert {k: v for k, v in unexplained.items() if Decimal(v)} == {}, "a position without fills"
    outcomes = Counter(e["event"] for e in order_events)
    assert outcomes["unknown"] == 0, outcomes
    statuses = Counter(o["status"] for o in at_venue.values())
    refusals = Counter(reason[:50] for reason in refused.values())

    hits = Counter(e.get("type", "?") for e in truth.events("fault_hit"))
    cancels = sum(s.action == "cancel" for s in signals)
    print(
        f"seed {SEED}: trades {len(seen)}, signals {len(signals)} ({cancels} cancel), "
        f"order requests {len(requests)}, accepted {len(accepted)} {dict(statuses)}, "
        f"outcomes {dict(outcomes)}, fault hits {dict(hits)}, refusals {dict(refusals)}, "
        f"positions {positions}"
    )

    # 4. The killed or frozen member's lanes were taken over within two lease periods.
    if {"processor", "freeze"} & {what for what, _ in plan}:
        assert chaos.takeovers and max(chaos.takeovers) <= 2 * LEASE_S, chaos.takeovers
