"""Measure how cost grows with the symbols and with the processor members, in one table.

Rows: 1, 10, 200 and 1,000 symbols on one ``redis-server`` with one processor member (one
partition); then 1, 2 and 4 processor members on a three-master Redis Cluster
(:mod:`bench.cluster`), :data:`CLUSTER_SYMBOLS` symbols over :data:`CLUSTER_SHARDS` partitions
whose leases are given to the members round-robin beforehand (a member takes what is free, so
without that the first one started would own every partition).

Each row runs the real stages (``python -m tickpipe.ingestor``, ``python -m
tickpipe.processor`` per member) against the blast server (``python -m bench.blast``), which
serves each ingestor connection the trades of the streams it subscribed, round-robin over the
symbols, as a venue does. Twice per row, each time with fresh stages in a namespace of their own:

* **throughput**: ``count`` trades as fast as the pipeline reads them. The rate is ``count`` /
  (the last trade readable in the trades streams - the first frame written by the feed), every
  trade checked in Redis once; CPU is each process's user + system time over that span, as % of
  one core (feed, ingestor, each member, each redis-server), and the limit the run hit is read
  from those figures (:func:`limit_hit`);
* **latency**: the feed paced at ``rate`` trades/s over all symbols; the feed logs when it wrote
  each frame, so every trade's first two hops are timed as in :mod:`bench.latency`: feed to the
  ingestor's receive stamp (``ts_recv``), then to the processor's batch stamp (``ts_proc``).

Every process is started by the benchmark's :class:`bench.rig.Rig` (or the cluster) and stopped
at the end of its run, also when a run fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.cluster import Cluster
from bench.frames import symbol_names, trade_key
from bench.peer import cpu_seconds, wait_idle
from bench.rig import Rig, temp_dir, wait_until
from bench.stats import Row, rate, summarize_ms
from tickpipe.common.contract import raw_frames_of
from tickpipe.common.names import Partition
from tickpipe.common.redis_io import connect_redis
from tickpipe.common.settings import Settings

__all__ = [
    "Result",
    "Setup",
    "format_scaling",
    "hop_latencies",
    "limit_hit",
    "member_leases",
    "read_feed_log",
    "run_scaling",
    "setups",
]

SYMBOL_COUNTS = (1, 10, 200, 1000)
MEMBER_COUNTS = (1, 2, 4)
CLUSTER_SYMBOLS = 200
CLUSTER_SHARDS = 4
#: A process at or above this % of one core is taken as the limit of its run.
SATURATED_PCT = 85.0
#: The paced feed's default rate (trades/s over all symbols): one every row can keep.
DEFAULT_RATE = 2000


@dataclass(frozen=True)
class Setup:
    """One row: how many symbols, processor members and partitions, on which Redis."""

    symbols: int
    members: int
    shards: int
    cluster: bool

    @property
    def label(self) -> str:
        redis = "3-master Cluster" if self.cluster else "1 redis-server"
        plural = "s" if self.members > 1 else ""
        return (
            f"{self.symbols:,} symbol{'s' if self.symbols > 1 else ''}, {self.shards} "
            f"partition{'s' if self.shards > 1 else ''}, {self.members} member{plural}, {redis}"
        )


def setups() -> list[Setup]:
    """Return the table's rows in order: the symbol counts, then the cluster's member counts."""
    single = [Setup(n, 1, 1, False) for n in SYMBOL_COUNTS]
    return single + [Setup(CLUSTER_SYMBOLS, m, CLUSTER_SHARDS, True) for m in MEMBER_COUNTS]


def member_leases(partitions: Sequence[Partition], members: int) -> dict[Partition, str]:
    """Give the partitions to members ``m1``..``mN`` round-robin (the lease values to preset)."""
    if members < 1:
        raise ValueError(f"need at least one member, got {members}")
    return {p: f"m{n % members + 1}" for n, p in enumerate(partitions)}


def limit_hit(
    cpu_pct: Mapping[str, float],
    cores: int,
    *,
    machine_pct: float | None = None,
    saturated: float = SATURATED_PCT,
) -> str:
    """Name what limited a run from each process's CPU (% of one core).

    A process at ``saturated`` % of a core or more is the limit (a ``redis*`` process: Redis;
    the ``feed``: the feed). Else the machine is, when its ``cores`` were busy (``machine_pct``,
    every process on it, other jobs' too, % of one core; or this run's processes together) at
    ``saturated`` % each. Else nothing was saturated: the stages waited on each other (round
    trips, wake-ups).
    """
    if not cpu_pct:
        return "unknown (no CPU figures)"
    name, top = max(cpu_pct.items(), key=lambda kv: kv[1])
    total = sum(cpu_pct.values())
    if top >= saturated:
        if name.startswith("redis"):
            return f"Redis: {name} at {top:.0f} % of a core"
        if name == "feed":
            return f"the feed at {top:.0f} % of a core"
        return f"CPU of the {name} ({top:.0f} % of a core)"
    busy = total if machine_pct is None else max(machine_pct, total)
    if busy >= saturated * cores:
        return (
            f"the machine's {cores} cores ({busy:.0f} % busy; this run's processes {total:.0f} %, "
            f"the most {name} {top:.0f} %)"
        )
    return f"none saturated: waits (busiest {name} {top:.0f} %, machine {busy:.0f} %)"


def cpu_busy_ticks(stat_line: str) -> tuple[int, int]:
    """Return ``(busy, total)`` jiffies of the aggregate ``cpu`` line of ``/proc/stat``.

    Busy is everything but idle and I/O wait; guest time is already inside user time.
    """
    fields = [int(x) for x in stat_line.split()[1:9]]  # user .. steal
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def machine_busy_pct(before: tuple[int, int], after: tuple[int, int], cores: int) -> float:
    """Return how busy the machine was between two :func:`cpu_busy_ticks`, in % of one core."""
    total = after[1] - before[1]
    return 100.0 * cores * (after[0] - before[0]) / total if total > 0 else 0.0


def _stat_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        return cpu_busy_ticks(f.readline())


def hop_latencies(
    sent: Mapping[tuple[str, int], int], trades: Iterable[tuple[str, int, int, int]]
) -> tuple[list[int], list[int]]:
    """Return the feed -> ingestor and ingestor -> processor batch latencies (ns) of ``trades``.

    ``sent`` maps ``(symbol, trade id)`` to when the feed wrote it; each trade is ``(symbol,
    trade id, ts_recv, ts_proc)``. Trades the feed did not time are left out.
    """
    first: list[int] = []
    second: list[int] = []
    for symbol, trade_id, ts_recv, ts_proc in trades:
        at = sent.get((symbol, trade_id))
        if at is None:
            continue
        first.append(ts_recv - at)
        second.append(ts_proc - ts_recv)
    return first, second


@dataclass
class Result:
    """One row's figures; ``problem`` says what went wrong (empty when the counts were exact)."""

    setup: Setup
    trades_per_s: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)
    limit: str = ""
    #: CPU microseconds per trade, the stages and Redis together (not the feed).
    us_per_trade: float = 0.0
    machine_pct: float = 0.0
    checkpoint_bytes: int = 0
    latency: str = ""
    paced_per_s: float = 0.0
    problem: str = ""


def _latency_text(first: Sequence[int], second: Sequence[int]) -> str:
    if not first:
        return "no trades timed"
    a, b = summarize_ms(first), summarize_ms(second)
    return f"{a['p50']:.2f}/{a['p99']:.2f}, {b['p50']:.2f}/{b['p99']:.2f} (n={len(first):,})"


def _cpu_text(cpu_pct: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {pct:.0f}" for name, pct in cpu_pct.items())


def format_scaling(results: Sequence[Result], paced_rate: float, cores: int) -> str:
    """Render the scaling table (Markdown): one line per row."""
    head = (
        "setup",
        "trades/s end to end",
        f"latency at {paced_rate:,.0f}/s, p50/p99 ms: feed->ingestor, ->processor batch",
        "CPU, % of one core",
        "CPU µs per trade (stages + Redis)",
        "checkpoint bytes",
        f"limit hit ({cores} cores)",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        if r.problem:
            cells = (r.setup.label, "FAILED", r.problem, _cpu_text(r.cpu_pct), "", "", r.limit)
        else:
            paced = f" (sent {r.paced_per_s:,.0f}/s)" if r.paced_per_s else ""
            cells = (
                r.setup.label,
                f"{r.trades_per_s:,.0f}",
                r.latency + paced,
                f"{_cpu_text(r.cpu_pct)}; machine {r.machine_pct:.0f}",
                f"{r.us_per_trade:.0f}",
                f"{r.checkpoint_bytes:,}",
                r.limit,
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- running -------------------------------------------------------------------------------------


@dataclass
class Backend:
    """The Redis of some rows: its URL for the stages, a client, and its processes."""

    url: str
    client: aioredis.Redis
    pids: dict[str, int]


@dataclass
class Phase:
    """What one run of the stages measured."""

    first_frame_ns: int
    end_ns: int
    cpu_s: dict[str, float]
    events: list[dict[str, Any]]
    problem: str
    #: Paced runs: every trade's ``(symbol, trade id, ts_recv, ts_proc)``.
    stamps: list[tuple[str, int, int, int]]
    #: The machine's busy % of one core over the run (every process, other jobs' too).
    machine_pct: float
    #: The partitions' checkpoints at the end, in bytes (each commit writes its partition's).
    checkpoint_bytes: int


def read_feed_log(path: Path) -> list[dict[str, Any]]:
    """Read the feed's log; a line still being written (a long send log) is left for later."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            out.append(orjson.loads(line))
    return out


def _subscribed(events: list[dict[str, Any]]) -> int:
    """Count the symbols the feed's connections asked for (by URL or by ``SUBSCRIBE``)."""
    per_conn: dict[int, int] = {}
    for e in events:
        if e["ev"] == "connected" and "streams=" in e["path"]:
            per_conn[e["conn"]] = e["path"].count("@")
        elif e["ev"] == "subscribed":
            per_conn[e["conn"]] = max(per_conn.get(e["conn"], 0), int(e["symbols"]))
    return sum(per_conn.values())


def _stage_env(
    setup: Setup, ns: str, symbols: Sequence[str], port: int, url: str
) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "TICKPIPE_NAMESPACE": ns,
        "TICKPIPE_SYMBOLS": ",".join(symbols),
        "TICKPIPE_SHARDS": str(setup.shards),
        "TICKPIPE_CHANNELS": "trade",
        "TICKPIPE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
        "TICKPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
    }


async def _run_phase(
    rig: Rig,
    backend: Backend,
    setup: Setup,
    ns: str,
    count: int,
    paced_rate: float = 0.0,
) -> Phase:
    """Start the feed and the stages, release the feed, wait for every trade; stop them all."""
    symbols = symbol_names(setup.symbols)
    events = rig.tmp / f"{ns}-feed.jsonl"
    feed_args = ["-m", "bench.blast", "--count", str(count), "--hold", "--events", str(events)]
    feed_args += ["--symbols", ",".join(symbols), "--rate", str(paced_rate)]
    names = [f"feed-{ns}", f"ingestor-{ns}"]
    names += [f"processor-{n}-{ns}" for n in range(1, setup.members + 1)]
    started: list[str] = []
    try:
        started.append(names[0])
        port = await rig.start_ready(names[0], feed_args, "port")
        settings = Settings(namespace=ns, symbols=symbols, shards=setup.shards)
        keys, redis = settings.keys, backend.client
        parts = list(settings.partitions())
        for part, member in member_leases(parts, setup.members).items():
            await redis.set(keys.lease(part), member, px=120_000)
        env = _stage_env(setup, ns, symbols, port, backend.url)
        started.append(names[1])
        rig.start(names[1], ["-m", "tickpipe.ingestor"], {**env, "TICKPIPE_INSTANCE": "ing"})
        for n, name in enumerate(names[2:], start=1):
            started.append(name)
            rig.start(name, ["-m", "tickpipe.processor"], {**env, "TICKPIPE_INSTANCE": f"m{n}"})
        pids = {name: rig.children[name].pid for name in names}

        def alive() -> None:
            for name in started:
                proc = rig.children[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: {rig.tail(name)}")

        raws = [keys.raw(p) for p in parts]
        trades = [keys.trades(p) for p in parts]

        async def ready() -> bool:
            alive()
            if _subscribed(read_feed_log(events)) < len(symbols):
                return False
            for raw in raws:  # the connect marker is in, and the owner has read it
                if not await redis.xlen(raw):
                    return False
                groups: Any = await redis.xinfo_groups(raw)
                if not groups or groups[0]["pending"] or groups[0].get("lag"):
                    return False
            return True

        await wait_until(ready, timeout_s=90, what=f"{setup.label}: stages ready", every_s=0.05)
        await wait_idle(pids)
        every = {**pids, **backend.pids}
        before = {name: cpu_seconds(pid) for name, pid in every.items()}
        ticks = _stat_ticks()
        rig.kill(names[0], signal.SIGUSR1)

        async def done() -> bool:
            alive()
            return sum([int(await redis.xlen(t)) for t in trades]) >= count

        # A paced run lasts count / rate; a stall past that (a lost connection the feed holds)
        # fails the row instead of the whole benchmark waiting.
        limit_s = 600.0 if not paced_rate else 120.0 + 3 * count / paced_rate
        await wait_until(done, timeout_s=limit_s, what=f"{setup.label}: every trade", every_s=0.005)
        end = time.time_ns()
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in every.items()}
        machine = machine_busy_pct(ticks, _stat_ticks(), os.cpu_count() or 1)

        async def logged() -> list[dict[str, Any]]:  # the feed logs a send after writing it
            feed = read_feed_log(events)
            began = {e["conn"] for e in feed if e["ev"] == "first_frame"}
            return feed if began <= {e["conn"] for e in feed if e["ev"] == "sent_all"} else []

        feed = await wait_until(logged, timeout_s=60, what="the feed's log of its sends")
        frames = sum([await _trade_frames(redis, raw) for raw in raws])
        stored = sum([int(await redis.xlen(t)) for t in trades])
        problem = ""
        if frames != count or stored != count:
            problem = f"{frames:,} raw trade frames, {stored:,} trades of {count:,}"
        first = min(int(e["ts"]) for e in feed if e["ev"] == "first_frame")
        stamps = await _trade_stamps(redis, trades) if paced_rate else []
        saved = sum([int(await redis.strlen(keys.checkpoint(p))) for p in parts])
        for key in (*raws, *trades):  # one key per call: a cluster allows no cross-slot DEL
            await redis.delete(key)
        named = {_short(name, ns): s for name, s in cpu.items()}
        return Phase(first, end, named, feed, problem, stamps, machine, saved)
    finally:
        rig.stop_all([name for name in started if name in rig.children])


async def _trade_frames(redis: aioredis.Redis, stream: str) -> int:
    """Count the venue data frames in a raw stream: not markers, not answers to SUBSCRIBE
    (the ingestor reconnects a connection that fell silent after the feed's last trade, and
    subscribes again)."""
    start, total = "-", 0
    while True:
        chunk: Any = await redis.xrange(stream, start, "+", count=20_000)
        total += sum(
            1
            for _, f in raw_frames_of(chunk)  # a packed entry holds several frames
            if f.get(b"kind") == b"ws" and f.get(b"data", b"").startswith(b'{"stream":')
        )
        if len(chunk) < 20_000:
            return total
        start = "(" + chunk[-1][0].decode()


def _short(name: str, ns: str) -> str:
    """``processor-2-NS`` -> ``processor 2``; ``feed-NS`` -> ``feed``; redis names stay."""
    base = name.removesuffix(f"-{ns}")
    return base.replace("-", " ") if base.startswith("processor") else base


async def _trade_stamps(
    redis: aioredis.Redis, streams: Sequence[str]
) -> list[tuple[str, int, int, int]]:
    out: list[tuple[str, int, int, int]] = []
    for stream in streams:
        start = "-"
        while True:
            chunk: Any = await redis.xrange(stream, start, "+", count=10_000)
            for _, f in chunk:
                out.append(
                    (
                        f[b"symbol"].decode(),
                        int(f[b"trade_id"]),
                        int(f[b"ts_recv"]),
                        int(f[b"ts_proc"]),
                    )
                )
            if len(chunk) < 10_000:
                break
            start = "(" + chunk[-1][0].decode()
    return out


async def _placement(client: aioredis.Redis, cluster: Cluster) -> str:
    """Say which node holds each partition of the cluster rows, and its symbols."""
    settings = Settings(symbols=symbol_names(CLUSTER_SYMBOLS), shards=CLUSTER_SHARDS)
    await client.ping()  # a cluster client learns the slots' owners on its first command
    node_of = {port: name for name, port in zip(cluster.pids, cluster.ports, strict=True)}
    where = []
    for part, symbols in settings.partitions().items():
        node: Any = client.get_node_from_key(settings.keys.raw(part))  # type: ignore[attr-defined]
        where.append(f"{part} ({len(symbols)} symbols) on {node_of[node.port]}")
    return "partitions: " + ", ".join(where)


def _collapse_processors(cpu_pct: dict[str, float], members: int) -> dict[str, float]:
    if members == 1 and "processor 1" in cpu_pct:
        return {("processor" if k == "processor 1" else k): v for k, v in cpu_pct.items()}
    return cpu_pct


async def _row(
    rig: Rig,
    backend: Backend,
    setup: Setup,
    tag: str,
    count: int,
    paced_rate: float,
    seconds: float,
) -> Result:
    result = Result(setup)
    cores = os.cpu_count() or 1
    try:
        run = await _run_phase(rig, backend, setup, f"sc{tag}t", count)
        span_s = (run.end_ns - run.first_frame_ns) / 1e9
        result.trades_per_s = rate(count, span_s)
        pct = {name: 100 * s / span_s for name, s in run.cpu_s.items()}
        result.cpu_pct = _collapse_processors(pct, setup.members)
        result.machine_pct = run.machine_pct
        result.checkpoint_bytes = run.checkpoint_bytes
        result.us_per_trade = 1e6 * sum(v for k, v in run.cpu_s.items() if k != "feed") / count
        result.limit = limit_hit(result.cpu_pct, cores, machine_pct=run.machine_pct)
        result.problem = run.problem
        paced = await _run_phase(
            rig, backend, setup, f"sc{tag}l", max(1, int(paced_rate * seconds)), paced_rate
        )
        symbols = symbol_names(setup.symbols)
        sent = {
            trade_key(index, symbols): at
            for e in paced.events
            if e["ev"] == "sent_all"
            for index, at in e.get("sent", [])
        }
        first, second = hop_latencies(sent, paced.stamps)
        result.latency = _latency_text(first, second)
        if len(sent) > 1:
            result.paced_per_s = rate(len(sent), (max(sent.values()) - min(sent.values())) / 1e9)
        result.problem = "; ".join(p for p in (result.problem, paced.problem) if p)
    except Exception as exc:  # one failed row must not hide the others
        result.problem = f"{type(exc).__name__}: {exc}"[:300]
    return result


async def run_scaling(
    quick: bool,
    *,
    count: int | None = None,
    paced_rate: float | None = None,
    seconds: float | None = None,
) -> list[Row]:
    """Run every row of :func:`setups`; print the scaling table; return the bench's rows."""
    count = count or (30_000 if quick else 200_000)
    paced_rate = paced_rate or DEFAULT_RATE
    seconds = seconds or (3.0 if quick else 10.0)
    results: list[Result] = []
    notes: list[str] = []
    cores = os.cpu_count() or 1
    with temp_dir("tp-bench-scaling-") as tmp:
        rig = Rig(tmp)
        cluster = Cluster(tmp / "cluster")
        try:
            client = await rig.start_redis()
            assert rig.redis_proc is not None
            single = Backend(rig.redis_url, client, {"redis": rig.redis_proc.pid})
            rows = setups()
            for n, setup in enumerate(rows):
                if setup.cluster and not cluster.procs:
                    await cluster.start()
                    backend = Backend(cluster.url, connect_redis(cluster.url), cluster.pids)
                    notes.append(await _placement(backend.client, cluster))
                elif not setup.cluster:
                    backend = single
                results.append(await _row(rig, backend, setup, str(n), count, paced_rate, seconds))
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(f"  {setup.label}: done, load average {load}", file=sys.stderr, flush=True)
            await client.aclose()
            if cluster.procs:
                await backend.client.aclose()
        finally:
            await rig.close()
            await cluster.stop()
    table = format_scaling(results, paced_rate, cores)
    print(
        f"\nScaling ({count:,} trades per throughput run; latency at {paced_rate:,.0f}/s for "
        f"{seconds:.0f} s):\n\n{table}\n\n" + "".join(f"{note}\n" for note in notes),
        flush=True,
    )
    rows_out = [Row("scaling", "Cluster", note) for note in notes]
    for r in results:
        if r.problem:
            rows_out.append(Row("scaling", "FAILED", f"{r.setup.label}: {r.problem}"))
            continue
        rows_out.append(
            Row(
                "scaling",
                f"{r.setup.label}: trades/s end to end",
                f"{r.trades_per_s:,.0f}",
                f"limit: {r.limit}; CPU % of a core: {_cpu_text(r.cpu_pct)}; "
                f"{r.us_per_trade:.0f} CPU µs per trade; checkpoints {r.checkpoint_bytes:,} bytes",
            )
        )
        rows_out.append(
            Row(
                "scaling",
                f"{r.setup.label}: p50/p99 ms feed->ingestor, ->processor batch",
                r.latency,
                f"paced at {paced_rate:,.0f}/s, sent {r.paced_per_s:,.0f}/s",
            )
        )
    return rows_out
