"""Loopback ports for tests that start a server on a port they choose first.

A port taken from the kernel (bind to port 0) and released again is only free *now*: until the
server binds it, another pytest-xdist worker can be handed the same number, or the kernel can
give it to an outgoing connection as its local port. :func:`free_port` hands out ports from a
range of this worker's own, below the kernel's ephemeral range (32768-60999 on Linux), so
neither happens; it still checks that the port is free, for whatever else runs on the machine.
"""

from __future__ import annotations

import itertools
import os
import socket

__all__ = ["free_port", "free_run"]

#: Ports handed out per worker, and where the workers' ranges start.
_SPAN, _FIRST = 1500, 20000
_MAX_WORKERS = 8
_next = itertools.count()


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ... under pytest -n
    digits = worker.removeprefix("gw")
    return int(digits) % _MAX_WORKERS if digits.isdigit() else 0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now and that no other worker is handed."""
    return free_run(1, host)


def free_run(n: int, host: str = "127.0.0.1") -> int:
    """Return ``p`` such that ports ``p .. p+n-1`` on ``host`` are free now and handed to no one
    else (neither another worker nor a later call here)."""
    base = _FIRST + _worker_index() * _SPAN
    for _ in range(_SPAN):
        first = next(_next) % _SPAN
        if first + n > _SPAN:
            continue  # a run does not wrap around the end of the worker's range
        for _ in range(n - 1):
            next(_next)  # the rest of the run is this caller's too
        if all(_bindable(host, base + first + i) for i in range(n)):
            return base + first
    raise RuntimeError(f"no {n} free ports in a row in {base}..{base + _SPAN - 1} on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
