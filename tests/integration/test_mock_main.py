"""Integration test: ``python -m mock_ws`` as a real process with --ready-file and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from mock_ws import read_ground_truth

REPO = Path(__file__).parents[2]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    out["PYTHONPATH"] = str(REPO)
    return out


def test_help_documents_every_flag() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mock_ws", "--help"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for flag in (
        "--binance-port",
        "--host",
        "--seed",
        "--symbols",
        "--rate",
        "--ground-truth",
        "--ready-file",
        "--ping-interval",
    ):
        assert flag in done.stdout


def test_bad_flag_value_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mock_ws",
            "--binance-port",
            "0",
            "--rate",
            "0",
            "--env-file",
            str(tmp_path / "none.env"),
        ],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--rate" in done.stderr


def test_process_listens_writes_ready_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready, gt = tmp_path / "ready.json", tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mock_ws",
            "--binance-port",
            "0",
            "--ready-file",
            str(ready),
            "--ground-truth",
            str(gt),
            "--seed",
            "3",
            "--symbols",
            "BTCUSDT,SOLUSDT",
            "--env-file",
            str(tmp_path / "none.env"),
        ],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "mock did not become ready"
            time.sleep(0.02)
        port = orjson.loads(ready.read_bytes())["binance_port"]
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/exchangeInfo", timeout=5) as r:
            info = orjson.loads(r.read())
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "SOLUSDT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/status", timeout=5) as r:
            assert set(orjson.loads(r.read())["last_price"]) == {"BTCUSDT", "SOLUSDT"}
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    lines = [orjson.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert any(line.get("msg") == "listening" and line.get("port") == port for line in lines)
    assert all(line["service"] == "mock_ws" for line in lines)
    assert read_ground_truth(gt).events() == []  # nobody connected
