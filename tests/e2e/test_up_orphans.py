"""When `tickpipe up` itself dies (kill -9, an OOM kill), nothing it started runs on.

Its stages and the embedded redis-server run in sessions of their own (so a terminal's Ctrl-C
reaches the supervisor alone, which stops them in order). Had the supervisor died without that
chance, they used to run on as orphans, holding the ports, the Redis data directory and the
venue session. Each child now asks the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_up import _env
from tests.waits import wait_for

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> dict[int, str]:
    """Return the live processes whose parent is ``pid``, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def test_killing_up_stops_every_process_it_started(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "300", "--data-dir",
         str(tmp_path / "state"), "--rate", "20"],
        env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started: dict[int, str] = {}
    try:

        def all_up() -> bool:
            started.update(children_of(up.pid))
            names = " ".join(c for c in started.values() if "prctl" not in c)  # exec'd
            return all(
                part in names
                for part in ("redis-server", "mock_ws", "ingestor", "processor", "trader")
            )

        wait_for(all_up, timeout_s=60, what="tickpipe up to start redis, the mock and every stage")
        up.kill()  # no chance to stop anything in order
        up.wait(10)
        wait_for(
            lambda: not [p for p in started if alive(p)],
            timeout_s=30,
            what="every process tickpipe up started to exit after it was killed",
        )
    finally:
        if up.poll() is None:
            up.kill()
        for pid in started:  # never leave orphans behind, whatever the outcome
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert len(started) >= 5, started
