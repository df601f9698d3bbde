"""Start and watch the benchmark's processes: redis-server, blast server, mock, stages."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.procs import start_redis_server

__all__ = [
    "GC_PROBE_ENV",
    "Rig",
    "gc_pauses",
    "rss_bytes",
    "stalls_during",
    "temp_dir",
    "wait_until",
]

REPO = Path(__file__).resolve().parents[1]
#: Set in a child's environment (a directory): the child records its GC pauses there.
GC_PROBE_ENV = "BENCH_GC_PROBE_DIR"


def rss_bytes(pid: int) -> int:
    """Return the resident set size of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout_s: float, what: str, every_s: float = 0.005
) -> Any:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


@dataclass
class Rig:
    """A temporary directory, one redis-server and the child processes of one benchmark."""

    tmp: Path
    redis_proc: asyncio.subprocess.Process | None = None
    redis_url: str = ""
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def start_redis(self) -> aioredis.Redis:
        """Start redis-server (AOF off: the benchmark measures tickpipe, not the disk)."""
        self.redis_proc, self.redis_url = await start_redis_server(
            self.tmp / "redis", appendonly=False
        )
        return aioredis.Redis.from_url(self.redis_url)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Return a clean environment for a stage process pointed at this rig's Redis."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
        env.update(
            REDIS_URL=self.redis_url,
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
            TICKPIPE_LOG_LEVEL="WARNING",
            TICKPIPE_DATA_DIR=str(self.tmp / "data"),
        )
        env.update(extra or {})
        if env.get(GC_PROBE_ENV):  # record the child's GC pauses (bench/gcprobe)
            env["PYTHONPATH"] = os.pathsep.join([str(REPO / "bench" / "gcprobe"), str(REPO)])
        return env

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
        """Start ``python ARGS`` as child ``name`` (logs in the rig's directory); return its pid."""
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=self.env(env),
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.children[name] = proc
        return proc.pid

    async def start_ready(self, name: str, args: list[str], key: str, **kw: Any) -> int:
        """Start a child that writes ``{key: port}`` to ``--ready-file``; return the port."""
        ready = self.tmp / f"{name}.ready.json"
        self.start(name, [*args, "--ready-file", str(ready)], **kw)
        proc = self.children[name]

        async def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.tail(name)}")
            return ready.exists()

        await wait_until(up, timeout_s=30, what=f"{name} to listen", every_s=0.02)
        return int(orjson.loads(ready.read_bytes())[key])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to child ``name``."""
        proc = self.children[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        """Stop child ``name`` with SIGTERM, then SIGKILL after ``timeout_s``."""
        proc = self.children.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self, names: list[str], timeout_s: float = 15.0) -> None:
        """Stop several children: SIGTERM to all, then wait (SIGKILL after ``timeout_s``)."""
        procs = [self.children.pop(name) for name in names]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def close(self) -> None:
        self.stop_all(list(self.children), timeout_s=5)
        if self.redis_proc is not None and self.redis_proc.returncode is None:
            self.redis_proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.redis_proc.wait(), 10)
            if self.redis_proc.returncode is None:
                self.redis_proc.kill()
                await self.redis_proc.wait()


def _probe_name(path: Path, data: dict[str, Any]) -> str:
    argv = data["argv"]
    return argv[1].rsplit(".", 1)[-1] if len(argv) > 1 and argv[0] == "-m" else path.stem


def gc_pauses(directory: Path) -> str:
    """Summarise the GC pauses and loop lag the probed children wrote to ``directory`` (ms)."""
    parts = []
    for path in sorted(directory.glob("gc-*.json")):
        data = orjson.loads(path.read_bytes())
        gens = " ".join(
            f"g{n} {g['collections']}x max {g['max_ms']:.1f}"
            + (f"/{g['wall_max_ms']:.1f} wall" if "wall_max_ms" in g else "")
            + f" (>1 ms: {g['over_1ms']})"
            for n, g in enumerate(data["generations"])
        )
        loop = data.get("loop")
        if loop and loop["wakeups"]:
            gens += (
                f"; loop lag p99 {loop['p99_ms']:.1f} max {loop['max_ms']:.1f}"
                f" (>2 ms: {loop['over_2ms']})"
            )
        if "cpu_s" in data:
            gens += f"; CPU {data['cpu_s']:.1f} s"
        tracked = data.get("tracked")
        if tracked:
            top = ", ".join(f"{k} {v:,}" for k, v in list(tracked["top"].items())[:3])
            big = ", ".join(f"{name} {n:,}" for n, name in tracked.get("largest", [])[:3])
            gens += f"; tracked {tracked['total']:,} ({top}; largest {big})"
        parts.append(f"{_probe_name(path, data)}: {gens}")
    return "; ".join(parts) or "no probe output"


def stalls_during(directory: Path, spans: list[tuple[int, int]]) -> str:
    """Name the probed stalls that overlap each span (wall ns): how many spans each kind hit.

    ``spans`` are the slow orders' (trade sent, order received) intervals; a stall of one
    process (a collection or a late event-loop wake-up, see bench/gcprobe) overlapping a span
    is a candidate cause of that order's latency.
    """
    if not spans:
        return "no slow orders"
    hits: dict[str, int] = {}
    explained = 0
    for start, end in spans:
        found = set()
        for path in sorted(directory.glob("gc-*.json")):
            data = orjson.loads(path.read_bytes())
            for kind, at, took in data.get("stalls", []):
                if at < end and at + took > start:
                    found.add(f"{_probe_name(path, data)} {kind}")
        explained += bool(found)
        for name in found:
            hits[name] = hits.get(name, 0) + 1
    named = ", ".join(f"{k} {v}" for k, v in sorted(hits.items(), key=lambda kv: -kv[1]))
    return f"{explained} of {len(spans)} overlap a stall: {named or 'none'}"


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """Yield a fresh temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)
