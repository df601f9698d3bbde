"""Record the garbage collector's pauses of a benchmark child (``python -m bench --gc-probe``).

Loaded by Python at start-up when this directory leads ``PYTHONPATH`` (:class:`bench.rig.Rig`
puts it there when ``BENCH_GC_PROBE_DIR`` is set). Each collection's duration is measured in the
thread's CPU time (``time.thread_time_ns``), so a process waiting for a core on a loaded machine
does not count as a pause; at exit the process writes ``gc-<pid>.json`` to that directory: its
command line and, per generation, the number of collections, the pauses over 1 ms and the
longest.
"""

import gc
import os
import sys
import time

import orjson

_DIR = os.environ.get("BENCH_GC_PROBE_DIR", "")
_started = [0]
_pauses: list[tuple[int, int]] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started[0] = time.thread_time_ns()
    else:
        _pauses.append((info["generation"], time.thread_time_ns() - _started[0]))


def _dump() -> None:
    gens = []
    for gen in range(3):
        took = [ns for g, ns in _pauses if g == gen]
        gens.append(
            {
                "collections": len(took),
                "over_1ms": sum(1 for ns in took if ns > 1_000_000),
                "max_ms": max(took, default=0) / 1e6,
            }
        )
    path = os.path.join(_DIR, f"gc-{os.getpid()}.json")
    with open(path, "wb") as f:
        f.write(orjson.dumps({"argv": sys.orig_argv[1:], "generations": gens}))


if _DIR:
    import atexit

    gc.callbacks.append(_on_gc)
    atexit.register(_dump)
