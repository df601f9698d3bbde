"""Integration test: ``python -m tickpipe.mock_ws`` as a process: --ready-file, SIGTERM."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import orjson

from tests.mock_cli import mock_process, run_mock
from tickpipe.mock_ws import read_ground_truth


def test_help_documents_every_flag() -> None:
    done = run_mock("--help")
    assert done.returncode == 0, done.stderr
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
        "--blast-symbols",
        "--replay",
        "--replay-speed",
    ):
        assert flag in done.stdout


def test_bad_flag_value_exits_2(tmp_path: Path) -> None:
    done = run_mock("--binance-port", "0", "--rate", "0", "--env-file", str(tmp_path / "none.env"))
    assert done.returncode == 2 and "--rate" in done.stderr


def test_process_listens_writes_ready_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"
    with mock_process(
        tmp_path, "--binance-port", "0", "--ground-truth", str(gt), "--seed", "3",
        "--symbols", "BTCUSDT,SOLUSDT",
    ) as mock:  # fmt: skip
        port = mock.ready["binance_port"]
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/exchangeInfo", timeout=5) as r:
            info = orjson.loads(r.read())
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "SOLUSDT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/status", timeout=5) as r:
            assert set(orjson.loads(r.read())["last_price"]) == {"BTCUSDT", "SOLUSDT"}
        code, stderr = mock.stop()
    assert code == 0, stderr
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line.get("msg") == "listening" and line.get("port") == port for line in lines)
    assert all(line["service"] == "mock_ws" for line in lines)
    assert read_ground_truth(gt).events() == []  # nobody connected


def test_bad_ed25519_key_exits_2(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_text("not a key")
    done = run_mock("--ed25519-key", f"k={pem}")
    assert done.returncode == 2 and "--ed25519-key" in done.stderr


def test_bad_scenario_exits_2() -> None:
    done = run_mock("--scenario", "meltdown@5")
    assert done.returncode == 2 and "--scenario" in done.stderr


def test_bad_fault_plan_exits_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('[{"type": "explode"}]')
    done = run_mock("--binance-port", "0", "--faults", str(plan))
    assert done.returncode == 2 and "--faults" in done.stderr


def test_fault_plan_file_fires_at_start(tmp_path: Path) -> None:
    gt, plan = tmp_path / "truth.jsonl", tmp_path / "plan.yaml"
    plan.write_text("faults:\n  - type: rate_limit\n    scope: rest\n    retry_after: 30\n")
    with mock_process(
        tmp_path, "--binance-port", "0", "--ground-truth", str(gt), "--faults", str(plan),
        "--lifetime", "60",
    ) as mock:  # fmt: skip
        port = mock.ready["binance_port"]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/time", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 429 and exc.headers["Retry-After"] == "30"
        else:
            raise AssertionError("the rate_limit fault did not fire")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_mock/faults", timeout=5) as r:
            assert [f["type"] for f in orjson.loads(r.read())["faults"]] == ["rate_limit"]
        code, _ = mock.stop()
    assert code == 0
    assert [e["type"] for e in read_ground_truth(gt).events("fault")] == ["rate_limit"]
