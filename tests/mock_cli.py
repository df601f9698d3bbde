"""Run ``python -m tickpipe.mock_ws`` as a real process for the tests of its command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["REPO", "MockProcess", "mock_env", "mock_process", "run_mock"]

REPO = Path(__file__).resolve().parents[1]


def mock_env() -> dict[str, str]:
    """The environment without any TICKPIPE_/BINANCE_ setting, with the checkout importable."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    out["PYTHONPATH"] = str(REPO)
    return out


def run_mock(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the mock with ``args`` to completion (for flags that make it exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "tickpipe.mock_ws", *args],
        cwd=REPO,
        env=mock_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass
class MockProcess:
    """A running mock: its process and what it wrote to its ready file."""

    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]

    def stop(self) -> tuple[int, str]:
        """Send SIGTERM and wait; return the exit code and what it wrote to stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, stderr = self.proc.communicate(timeout=10)
        return self.proc.returncode, stderr.decode(errors="replace")


@contextmanager
def mock_process(tmp_path: Path, *args: str, timeout_s: float = 15) -> Iterator[MockProcess]:
    """Start ``python -m tickpipe.mock_ws --ready-file ... ARGS`` and yield it once it listens.

    No ``.env`` file is read (``--env-file`` points nowhere). The process is killed on the way
    out if it still runs.
    """
    ready = tmp_path / "mock.ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe.mock_ws", "--ready-file", str(ready),
         "--env-file", str(tmp_path / "none.env"), *args],
        cwd=REPO, env=mock_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "the mock did not write its ready file"
            time.sleep(0.02)
        yield MockProcess(proc, orjson.loads(ready.read_bytes()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
