"""Compare tickpipe with cryptofeed on the same loopback feed and the same redis-server.

One blast server (``python -m bench.blast --hold``, ``wss://`` with a loopback certificate from
:func:`mock_ws.tls.generate`, whose CA both sides trust through ``SSL_CERT_FILE``) sends every
client the same ``count`` Binance trades: tickpipe subscribes to ``<symbol>@trade`` and gets
trade frames, cryptofeed (which subscribes to ``<symbol>@aggTrade`` for trades) gets the same
trades as aggregate-trade frames.
One redis-server takes both. Three runs per repetition, their order rotating so that no side
always runs first:

* **cryptofeed**: its Binance feed and ``TradeStream`` Redis backend (``bench.cryptofeed_side``,
  one process): one stream entry per trade;
* **tickpipe raw**: ``python -m tickpipe.ingestor`` alone: every frame in the raw stream (several
  frames may share an entry: counted as frames, :class:`bench.ingest.FrameCounter`);
* **tickpipe end to end**: the ingestor and ``python -m tickpipe.processor``: one entry per trade
  in the trades stream.

Each client connects and the server holds it (the processor also reads the connect marker) until
the processes are idle; then the server is released (SIGUSR1). A run's rate is ``count`` / (the
last entry seen in Redis - the server writing the first frame); CPU is each process's user +
system time over that span (``/proc/PID/stat``), per million trades. Every count is exact or the
run is reported: the trades stream must hold each trade once.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.ingest import FrameCounter, count_kind
from bench.rig import Rig, temp_dir, wait_until
from bench.stats import Row, rate
from tickpipe.common.settings import Settings
from tickpipe.mock_ws.tls import generate

__all__ = ["SIDES", "cpu_seconds", "run_peer", "wait_idle"]

SYMBOLS = ("BTCUSDT", "ETHUSDT")
SIDES = ("cryptofeed", "tickpipe raw", "tickpipe end to end")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds process ``pid`` has used (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


@dataclass
class Run:
    """One side's run: its rate, CPU per process and whether every trade arrived once."""

    side: str
    rate: float
    cpu_s: dict[str, float]
    problem: str = ""


@dataclass
class Feed:
    """The blast server of one benchmark and the events it logs."""

    rig: Rig
    port: int
    events: Path
    count: int

    def _events(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [orjson.loads(line) for line in self.events.read_bytes().splitlines() if line]

    async def connected(self, procs: dict[str, int], since: int, path_has: str) -> int:
        """Wait for the first connection opened after ``since`` (ns) whose request path has
        ``path_has``; return its number. An earlier run's client reconnecting (its ingestor
        seeing the feed fall silent, say) opens connections too: they are not this run's."""

        async def new() -> int | None:
            self.rig_alive(procs)
            for e in self._events():
                if e["ev"] == "connected" and e["ts"] >= since and path_has in e["path"]:
                    return int(e["conn"])
            return None

        conn: int = await wait_until(new, timeout_s=60, what="the client to connect")
        return conn

    def rig_alive(self, procs: dict[str, int]) -> None:
        for name in procs:
            proc = self.rig.children[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.rig.tail(name)}")

    def first_frame(self, conn: int) -> int:
        """Return when the server wrote the first frame to connection ``conn`` (ns)."""
        return next(
            int(e["ts"]) for e in self._events() if e["ev"] == "first_frame" and e["conn"] == conn
        )


async def wait_idle(procs: dict[str, int], *, still_s: float = 0.2, timeout_s: float = 30) -> None:
    """Wait until no process in ``procs`` used CPU for ``still_s`` (start-up work is over)."""
    deadline = time.monotonic() + timeout_s
    last = sum(cpu_seconds(p) for p in procs.values())
    while time.monotonic() < deadline:
        await asyncio.sleep(still_s)
        now = sum(cpu_seconds(p) for p in procs.values())
        if now - last < 0.01:
            return
        last = now


async def _measure(
    feed: Feed,
    redis: aioredis.Redis,
    started: dict[str, int],
    ready: Callable[[], Any],
    done: Callable[[], Any],
    side: str,
    since: int,
) -> tuple[float, dict[str, float]]:
    """Release the held client, wait for ``done``; return (rate, CPU seconds per process)."""
    conn = await feed.connected(started, since, "@aggTrade" if side == "cryptofeed" else "@trade")

    async def is_ready() -> Any:
        feed.rig_alive(started)
        return await ready()

    await wait_until(is_ready, timeout_s=60, what=f"{side} to be ready")
    await wait_idle(started)
    pids = {**started, "redis-server": feed.rig.redis_proc.pid if feed.rig.redis_proc else 0}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    feed.rig.kill("blast", signal.SIGUSR1)

    async def finished() -> Any:
        feed.rig_alive(started)
        return await done()

    await wait_until(finished, timeout_s=600, what=f"{side} to store every trade", every_s=0.002)
    end = time.time_ns()
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return rate(feed.count, (end - feed.first_frame(conn)) / 1e9), cpu


async def _total_len(redis: aioredis.Redis, streams: Sequence[str]) -> int:
    return sum([int(await redis.xlen(s)) for s in streams])


async def _cryptofeed(feed: Feed, redis: aioredis.Redis, rep: int) -> Run:
    key = f"cf{rep}"
    streams = [f"{key}-BINANCE-{s[:-4]}-{s[-4:]}" for s in SYMBOLS]
    name = f"cryptofeed-{rep}"
    since = time.time_ns()
    pid = feed.rig.start(
        name,
        [
            "-m",
            "bench.cryptofeed_side",
            "--url",
            f"wss://127.0.0.1:{feed.port}",
            "--redis-url",
            feed.rig.redis_url,
            "--key",
            key,
            "--symbols",
            ",".join(SYMBOLS),
            "--log",
            str(feed.rig.tmp / f"{name}-feedhandler.log"),
        ],
    )

    async def ready() -> bool:
        return True

    async def done() -> bool:
        return await _total_len(redis, streams) >= feed.count

    value, cpu = await _measure(feed, redis, {name: pid}, ready, done, "cryptofeed", since)
    feed.rig.stop(name)
    stored = await _total_len(redis, streams)
    await redis.delete(*streams)
    problem = "" if stored == feed.count else f"cryptofeed stored {stored:,} of {feed.count:,}"
    return Run(
        "cryptofeed", value, {"cryptofeed": cpu[name], "redis": cpu["redis-server"]}, problem
    )


def _stage_env(feed: Feed, ns: str) -> dict[str, str]:
    return {
        "TICKPIPE_NAMESPACE": ns,
        "TICKPIPE_INSTANCE": f"bench-{ns}",
        "TICKPIPE_SYMBOLS": ",".join(SYMBOLS),
        "TICKPIPE_CHANNELS": "trade",
        "TICKPIPE_BINANCE_WS_URL": f"wss://127.0.0.1:{feed.port}",
        "TICKPIPE_BINANCE_REST_URL": f"https://127.0.0.1:{feed.port}",
    }


async def _tickpipe(feed: Feed, redis: aioredis.Redis, rep: int, *, end_to_end: bool) -> Run:
    ns = f"tp{'e' if end_to_end else 'r'}{rep}"
    settings = Settings(namespace=ns, symbols=SYMBOLS)
    parts = list(settings.partitions())
    raws = [settings.keys.raw(p) for p in parts]
    trades = [settings.keys.trades(p) for p in parts]
    env = _stage_env(feed, ns)
    since = time.time_ns()
    started = {f"ingestor-{ns}": feed.rig.start(f"ingestor-{ns}", ["-m", "tickpipe.ingestor"], env)}
    if end_to_end:
        started[f"processor-{ns}"] = feed.rig.start(
            f"processor-{ns}", ["-m", "tickpipe.processor"], env
        )

    async def ready() -> bool:
        if await _total_len(redis, raws) < 1:  # the connect marker
            return False
        if not end_to_end:
            return True
        for raw in raws:  # the processor has read the marker: it holds the lane and is idle
            groups: Any = await redis.xinfo_groups(raw)
            if not groups or groups[0]["pending"] or groups[0].get("lag"):
                return False
        return True

    counters = [FrameCounter(redis, raw) for raw in raws]  # XLEN counts entries, not frames

    async def done() -> bool:
        if end_to_end:
            return await _total_len(redis, trades) >= feed.count
        return sum([await frames() for frames in counters]) >= feed.count + 1

    side = "tickpipe end to end" if end_to_end else "tickpipe raw"
    value, cpu = await _measure(feed, redis, started, ready, done, side, since)
    feed.rig.stop_all(list(started))
    frames = sum([await count_kind(redis, raw, b"ws") for raw in raws])
    stored = await _total_len(redis, trades) if end_to_end else frames
    await redis.delete(*raws, *trades)
    problem = ""
    if frames != feed.count or stored != feed.count:
        problem = f"{side}: {frames:,} raw frames, {stored:,} trades of {feed.count:,}"
    named = {n.split("-")[0]: s for n, s in cpu.items()}
    return Run(side, value, {**named, "redis": named.pop("redis")}, problem)


def _spread(values: Sequence[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return f"median of {len(values)}, range {lo:{fmt}}-{hi:{fmt}}"


def _rows(runs: list[Run], count: int, reps: int) -> list[Row]:
    by: dict[str, list[Run]] = {s: [r for r in runs if r.side == s] for s in SIDES}
    cf = [r.rate for r in by["cryptofeed"]]
    raw = [r.rate for r in by["tickpipe raw"]]
    e2e = [r.rate for r in by["tickpipe end to end"]]
    # Ratios are paired by repetition (the runs of one repetition share the machine's moment).
    raw_x = [t / c for t, c in zip(raw, cf, strict=True)]
    e2e_x = [t / c for t, c in zip(e2e, cf, strict=True)]
    ok = not any(r.problem for r in runs)
    checked = "every trade once" if ok else "COUNT OFF"
    rows = [
        Row(
            "peer",
            f"cryptofeed trades/s end to end ({count:,} trades, {checked})",
            f"{statistics.median(cf):,.0f}",
            _spread(cf, ",.0f"),
        ),
        Row(
            "peer",
            "tickpipe raw frames/s (ingestor alone)",
            f"{statistics.median(raw):,.0f}",
            _spread(raw, ",.0f"),
        ),
        Row(
            "peer",
            "tickpipe trades/s end to end (ingestor + processor)",
            f"{statistics.median(e2e):,.0f}",
            _spread(e2e, ",.0f"),
        ),
        Row(
            "peer",
            "raw frames/s / cryptofeed trades/s",
            f"{statistics.median(raw_x):.2f}x",
            _spread(raw_x, ".2f"),
            ">= 2.5x",
            statistics.median(raw_x) >= 2.5,
        ),
        Row(
            "peer",
            "trades/s end to end / cryptofeed",
            f"{statistics.median(e2e_x):.2f}x",
            _spread(e2e_x, ".2f"),
            ">= 2.0x",
            statistics.median(e2e_x) >= 2.0,
        ),
    ]
    # CPU per trade over every process (Redis included): what a loaded machine changes least.
    cpu = {s: [sum(r.cpu_s.values()) for r in by[s]] for s in SIDES}
    for side in SIDES[1:]:
        pairs = zip(cpu["cryptofeed"], cpu[side], strict=True)
        x = [c / t if t > 0 else math.nan for c, t in pairs]
        rows.append(
            Row(
                "peer",
                f"CPU per trade, all processes: cryptofeed / {side}",
                f"{statistics.median(x):.2f}x",
                _spread(x, ".2f"),
            )
        )
    for side in SIDES:
        names = list(by[side][0].cpu_s)
        per_m = {n: statistics.median([r.cpu_s[n] for r in by[side]]) * 1e6 / count for n in names}
        rows.append(
            Row(
                "peer",
                f"{side}: CPU s per million trades",
                ", ".join(f"{n} {v:.1f}" for n, v in per_m.items()),
                f"total {sum(per_m.values()):.1f}; median of {reps}",
            )
        )
    rows += [
        Row("peer", "exact count in Redis", "NO", r.problem, "every trade once", False)
        for r in runs
        if r.problem
    ]
    return rows


async def run_peer(quick: bool, *, count: int | None = None, reps: int | None = None) -> list[Row]:
    """Run cryptofeed, the ingestor and ingestor + processor, alternating; return the rows."""
    count = count or (20_000 if quick else 300_000)
    reps = reps or (1 if quick else 5)
    with temp_dir("tp-bench-peer-") as tmp:
        rig = Rig(tmp)
        tls = generate(tmp / "tls", [], datetime.datetime.now(datetime.UTC))  # loopback names
        cert, key = tls.cert, tls.key
        os.environ["SSL_CERT_FILE"] = str(tls.ca)  # children inherit it through Rig.env
        events = tmp / "blast-events.jsonl"
        runs: list[Run] = []
        try:
            redis = await rig.start_redis()
            args = ["-m", "bench.blast", "--count", str(count), "--hold", "--events", str(events)]
            args += ["--tls-cert", str(cert), "--tls-key", str(key)]
            port = await rig.start_ready("blast", args, "port")
            feed = Feed(rig, port, events, count)
            for rep in range(reps):
                order = SIDES[rep % 3 :] + SIDES[: rep % 3]
                for side in order:
                    if side == "cryptofeed":
                        runs.append(await _cryptofeed(feed, redis, rep))
                    else:
                        end_to_end = side == "tickpipe end to end"
                        runs.append(await _tickpipe(feed, redis, rep, end_to_end=end_to_end))
            await redis.aclose()
        finally:
            os.environ.pop("SSL_CERT_FILE", None)
            await rig.close()
    return _rows(runs, count, reps)
