"""Record a benchmark child's stalls: GC pauses and event-loop lag (``python -m bench --gc-probe``).

Loaded by Python at start-up when this directory leads ``PYTHONPATH`` (:class:`bench.rig.Rig`
puts it there when ``BENCH_GC_PROBE_DIR`` is set). Two probes:

* every collection, through ``gc.callbacks``, timed both in the thread's CPU time (what the
  collector itself cost; a process waiting for a core does not count) and in wall time (what the
  process's event loop saw);
* the event loop's lag: ``asyncio.run`` is wrapped so that a task wakes every
  :data:`TICK_S` and records how late it woke (a loop held by a callback, a collection, or a
  process waiting for a core).

At exit the process writes ``gc-<pid>.json`` to that directory: its command line, per
generation the number of collections, the pauses over 1 ms (CPU) and the longest (CPU and
wall), the loop's wake-ups and lags, and every stall (a collection over 1 ms wall or a lag over
2 ms) as ``[kind, wall start ns, duration ns]`` so the bench can set them against slow orders,
and the objects the collector tracks (the frozen ones aside), by type: before the
:data:`SNAPSHOT_EVERY`-th full collection (the last such count), or at exit when there were
fewer, with the five largest containers (length, type).
"""

import gc
import os
import sys
import time
from typing import Any

import orjson

_DIR = os.environ.get("BENCH_GC_PROBE_DIR", "")
#: The lag probe's period: 100 wake-ups per second cost the process well under 1 % of a core.
TICK_S = 0.01
_started = [0, 0, 0]
_pauses: list[tuple[int, int, int]] = []
_lags: list[int] = []
_stalls: list[tuple[str, int, int]] = []
#: Before every so many full collections the tracked objects are counted by type.
SNAPSHOT_EVERY = 10
_snapshot: dict[str, int] = {}
_largest: list[tuple[int, str]] = []


def _count_tracked() -> dict[str, int]:
    tracked: dict[str, int] = {}
    sizes = []
    for obj in gc.get_objects():  # not the frozen ones: what the collector scans
        name = type(obj).__qualname__
        tracked[name] = tracked.get(name, 0) + 1
        if isinstance(obj, (list, dict, set, tuple)) or name == "deque":
            sizes.append((len(obj), name))
    sizes.sort(reverse=True)
    _largest[:] = sizes[:5]
    return tracked


def _on_gc(phase: str, info: dict[str, int]) -> None:
    gen = info["generation"]
    if phase == "start":
        full = sum(1 for g, _, _ in _pauses if g == 2)
        if gen == 2 and full % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1:
            _snapshot.clear()  # now and then: counting costs a pass over the heap
            _snapshot.update(_count_tracked())
        _started[0] = time.thread_time_ns()
        _started[1] = time.perf_counter_ns()
        _started[2] = time.time_ns()
        return
    cpu = time.thread_time_ns() - _started[0]
    wall = time.perf_counter_ns() - _started[1]
    _pauses.append((gen, cpu, wall))
    if wall > 1_000_000:
        _stalls.append((f"gc{gen}", _started[2], wall))


async def _lag_probe() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    period_ns = int(TICK_S * 1e9)
    while True:
        due = loop.time() + TICK_S
        wall = time.time_ns() + period_ns
        await asyncio.sleep(TICK_S)
        late = int((loop.time() - due) * 1e9)
        _lags.append(late)
        if late > 2_000_000:
            _stalls.append(("lag", wall, late))


def _wrap_asyncio_run() -> None:
    import asyncio

    original = asyncio.run

    def run(main: Any, **kwargs: Any) -> Any:
        async def probed() -> Any:
            task = asyncio.ensure_future(_lag_probe())
            try:
                return await main
            finally:
                task.cancel()

        return original(probed(), **kwargs)

    asyncio.run = run


def _dump() -> None:
    gens = []
    for gen in range(3):
        cpu = [c for g, c, _ in _pauses if g == gen]
        wall = [w for g, _, w in _pauses if g == gen]
        gens.append(
            {
                "collections": len(cpu),
                "over_1ms": sum(1 for ns in cpu if ns > 1_000_000),
                "max_ms": max(cpu, default=0) / 1e6,
                "wall_max_ms": max(wall, default=0) / 1e6,
            }
        )
    lags = sorted(_lags)
    loop = {
        "wakeups": len(lags),
        "p99_ms": lags[int(len(lags) * 0.99)] / 1e6 if lags else 0.0,
        "max_ms": lags[-1] / 1e6 if lags else 0.0,
        "over_2ms": sum(1 for ns in lags if ns > 2_000_000),
    }
    tracked = _snapshot or _count_tracked()
    top = dict(sorted(tracked.items(), key=lambda kv: -kv[1])[:8])
    path = os.path.join(_DIR, f"gc-{os.getpid()}.json")
    with open(path, "wb") as f:
        f.write(
            orjson.dumps(
                {
                    "argv": sys.orig_argv[1:],
                    "generations": gens,
                    "loop": loop,
                    "stalls": _stalls,
                    "cpu_s": sum(os.times()[:2]),
                    "tracked": {"total": sum(tracked.values()), "top": top, "largest": _largest},
                }
            )
        )


if _DIR:
    import atexit

    gc.callbacks.append(_on_gc)
    _wrap_asyncio_run()
    atexit.register(_dump)
