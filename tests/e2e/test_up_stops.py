"""How `tickpipe up` stops: on Ctrl-C in order, and when killed outright, nothing runs on.

Its stages, the mock and the embedded redis-server run in sessions of their own, so a terminal's
Ctrl-C reaches the supervisor alone, which prints the final status and stops them in order. Had
the supervisor died without that chance, they used to run on as orphans, holding the ports, the
Redis data directory and the venue session. Each child now asks the kernel for SIGTERM when its
parent dies.
"""

from __future__ import annotations

import os
import re
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


def start_up(tmp_path: Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "tickpipe", "up", "--duration", "300", "--data-dir",
         str(tmp_path / "state"), "--rate", "20"],
        env=_env(), cwd=tmp_path, text=True, **popen,
    )  # fmt: skip


def wait_all_up(up: subprocess.Popen[str], started: dict[int, str]) -> None:
    """Wait until Redis, the mock and every stage run (their programs, past the wrapper)."""

    def all_up() -> bool:
        started.update(children_of(up.pid))
        names = " ".join(c for c in started.values() if "prctl" not in c)
        return all(
            part in names for part in ("redis-server", "mock_ws", "ingestor", "processor", "trader")
        )

    wait_for(all_up, timeout_s=60, what="tickpipe up to start redis, the mock and every stage")


def test_killing_up_stops_every_process_it_started(tmp_path: Path) -> None:
    up = start_up(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: dict[int, str] = {}
    try:
        wait_all_up(up, started)
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


def test_ctrl_c_prints_the_final_status_then_stops_everything(tmp_path: Path) -> None:
    # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
    up = start_up(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                  start_new_session=True)  # fmt: skip
    started: dict[int, str] = {}
    try:
        wait_all_up(up, started)
        logs = [tmp_path / "state" / "logs" / f"{s}.log" for s in ("ingestor", "trader")]
        wait_for(lambda: all(p.exists() and p.stat().st_size > 0 for p in logs), timeout_s=60,
                 what="the stages to log")  # fmt: skip
        os.killpg(up.pid, signal.SIGINT)
        out, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert up.returncode == 0, out
    final = out[out.rindex("final status") :]
    # read from Redis (the stream totals line), not "Redis did not answer"
    assert "did not answer" not in final, final
    assert re.search(r"\[\d\d:\d\d:\d\d\] raw=[\d,]+ trades=", final), final
    assert not [p for p in started if alive(p)]
    # Redis was stopped by up after the final status, not by the terminal's signal beside it
    redis_log = (tmp_path / "state" / "redis" / "redis.log").read_text()
    assert "Received SIGINT" not in redis_log and "Received SIGTERM" in redis_log, redis_log
