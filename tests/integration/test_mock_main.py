"""Integration test: ``python -m mock_ws`` as a real process with --ready-file and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
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
        "--faults",
        "--lifetime",
        "--weight-limit",
        "--ed25519-key",
        "--scenario",
        "--blast",
        "--blast-rate",
        "--replay",
        "--replay-speed",
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


def test_bad_ed25519_key_exits_2(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("not a key")
    done = subprocess.run(
        [sys.executable, "-m", "mock_ws", "--ed25519-key", f"k={pem}"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--ed25519-key" in done.stderr


def test_bad_scenario_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mock_ws", "--scenario", "meltdown@5"],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--scenario" in done.stderr


def test_bad_fault_plan_exits_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('[{"type": "explode"}]')
    done = subprocess.run(
        [sys.executable, "-m", "mock_ws", "--binance-port", "0", "--faults", str(plan)],
        cwd=REPO,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--faults" in done.stderr


def test_fault_plan_file_fires_at_start(tmp_path: Path) -> None:
    ready, gt, plan = tmp_path / "ready.json", tmp_path / "truth.jsonl", tmp_path / "plan.yaml"
    plan.write_text("faults:\n  - type: rate_limit\n    scope: rest\n    retry_after: 30\n")
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
            "--faults",
            str(plan),
            "--lifetime",
            "60",
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
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/time", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 429 and exc.headers["Retry-After"] == "30"
        else:
            raise AssertionError("the rate_limit fault did not fire")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/faults", timeout=5) as r:
            assert [f["type"] for f in orjson.loads(r.read())["faults"]] == ["rate_limit"]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert [e["type"] for e in read_ground_truth(gt).events("fault")] == ["rate_limit"]
