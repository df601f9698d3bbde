"""Integration test: ``python -m mock_ws --alpaca-port 0`` serves Alpaca REST next to Binance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).parents[2]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    out["PYTHONPATH"] = str(REPO)
    return out


def test_alpaca_port_flag(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    base = [sys.executable, "-m", "mock_ws", "--env-file", str(tmp_path / "none.env")]
    bad = subprocess.run(
        [*base, "--binance-port", "0", "--alpaca-port", "70000"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--alpaca-port" in bad.stderr
    proc = subprocess.Popen(
        [*base, "--binance-port", "0", "--alpaca-port", "0", "--ready-file", str(ready)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert proc.poll() is None, "mock exited early"
            assert time.monotonic() < deadline, "no ready file"
            time.sleep(0.05)
        ports = orjson.loads(ready.read_bytes())
        assert set(ports) == {"binance_port", "alpaca_port"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['alpaca_port']}/v2/account",
            headers={"APCA-API-KEY-ID": "mock-key", "APCA-API-SECRET-KEY": "mock-secret"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["status"] == "ACTIVE"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
