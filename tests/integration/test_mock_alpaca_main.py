"""Integration test: ``python -m tickpipe.mock_ws --alpaca-port 0`` serves Alpaca too."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson

from tests.mock_cli import mock_process, run_mock


def test_alpaca_port_flag(tmp_path: Path) -> None:
    no_env = ("--env-file", str(tmp_path / "none.env"))
    bad = run_mock(*no_env, "--binance-port", "0", "--alpaca-port", "70000")
    assert bad.returncode == 2 and "--alpaca-port" in bad.stderr
    with mock_process(tmp_path, "--binance-port", "0", "--alpaca-port", "0") as mock:
        assert set(mock.ready) == {"binance_port", "alpaca_port", "tls"} and not mock.ready["tls"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{mock.ready['alpaca_port']}/v2/account",
            headers={"APCA-API-KEY-ID": "mock-key", "APCA-API-SECRET-KEY": "mock-secret"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["status"] == "ACTIVE"
        code, stderr = mock.stop()
    assert code == 0, stderr
