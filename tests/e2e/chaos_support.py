"""Faults the end-to-end tests inflict on real processes: a freeze across a takeover, an AOF cut.

* :func:`freeze_through_takeover` stops a process with SIGSTOP, waits until another one has taken
  over what it held, and thaws it with SIGCONT a given delay later (also when the wait fails);
* :func:`blocked_reader` tells whether a process has a Redis connection parked in a blocking
  ``XREAD``/``XREADGROUP`` (matched through the process's own sockets in ``/proc``);
* :func:`mark_aof` and :func:`crash_with_aof_cut` simulate an OS crash under
  ``appendfsync everysec``: redis-server is killed and its AOF cut back to an earlier length, so
  the writes Redis acknowledged after the mark are gone when it starts again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.e2e.conftest import RedisServer, wait_for

__all__ = [
    "AofMark",
    "blocked_reader",
    "crash_with_aof_cut",
    "freeze_through_takeover",
    "mark_aof",
    "newest_aof",
]


def freeze_through_takeover(
    proc: subprocess.Popen[bytes],
    taken: Callable[[], object],
    *,
    thaw_after_s: float,
    timeout_s: float,
    what: str,
) -> float:
    """SIGSTOP ``proc``; once ``taken()`` holds, SIGCONT it ``thaw_after_s`` later.

    The condition is polled every 5 ms, so the thaw follows the takeover closely. Return the
    seconds from the freeze to the takeover. ``proc`` is thawed even when the wait fails.
    """
    proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        wait_for(taken, timeout_s=timeout_s, what=what, poll_s=0.005)
        waited_s = time.monotonic() - frozen
        time.sleep(thaw_after_s)  # the drawn delay itself, right after the takeover
    finally:
        proc.send_signal(signal.SIGCONT)
    return waited_s


def _socket_ports(pid: int) -> set[int]:
    """Return the local TCP ports of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def blocked_reader(client: redis.Redis, pid: int) -> bool:
    """Tell whether process ``pid`` has a connection blocked in ``XREAD``/``XREADGROUP`` now."""
    ports = _socket_ports(pid)
    for info in client.client_list():
        port = int(str(info.get("addr", ":0")).rsplit(":", 1)[1])
        reading = info.get("cmd") in ("xread", "xreadgroup")
        if port in ports and reading and "b" in info.get("flags", ""):
            return True
    return False


def newest_aof(data_dir: Path) -> Path:
    """Return the AOF file redis-server appends to now (the newest incremental one)."""
    manifest = next((data_dir / "appendonlydir").glob("*.manifest"))
    files = []
    for line in manifest.read_text().splitlines():
        words = line.split()
        fields = dict(zip(words[::2], words[1::2], strict=False))
        if fields.get("type") == "i":
            files.append((int(fields["seq"]), fields["file"]))
    return data_dir / "appendonlydir" / max(files)[1]


@dataclass(frozen=True)
class AofMark:
    """The AOF file Redis appends to and its length at one moment."""

    path: Path
    size: int


def mark_aof(server: RedisServer) -> AofMark:
    """Note the AOF's length now; automatic rewrites are turned off so the file stays the same.

    The setting lasts until this redis-server process ends.
    """
    client = server.client()
    try:
        client.config_set("auto-aof-rewrite-percentage", 0)
    finally:
        client.close()
    path = newest_aof(server.data_dir)
    return AofMark(path, path.stat().st_size)


def crash_with_aof_cut(server: RedisServer, mark: AofMark) -> int:
    """SIGKILL redis-server and cut its AOF back to ``mark``; return the bytes cut.

    Start it again with :func:`tests.e2e.conftest.start_redis` on the same port and directory.
    """
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    assert newest_aof(server.data_dir) == mark.path, "the AOF was rewritten after the mark"
    cut = mark.path.stat().st_size - mark.size
    with mark.path.open("r+b") as file:
        file.truncate(mark.size)
    return cut
