"""``python -m tickpipe.mock_ws --ibkr-port``: the gateway as a process, and its flags' errors."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import orjson

from tests.mock_cli import mock_process, run_mock


def test_ibkr_port_serves_the_gateway_and_reports_its_port(tmp_path: Path) -> None:
    with mock_process(tmp_path, "--binance-port", "0", "--ibkr-port", "0") as mock:
        port = mock.ready["ibkr_port"]
        url = f"http://127.0.0.1:{port}/v1/api/trsrv/stocks?symbols=AAPL"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert orjson.loads(r.read())["AAPL"][0]["contracts"][0]["conid"] == 265598
        code, stderr = mock.stop()
    assert code == 0, stderr


def test_bad_ibkr_flags_exit_2(tmp_path: Path) -> None:
    env_file = str(tmp_path / "none.env")
    for flag, value in (
        ("--ibkr-port", "70000"),
        ("--ibkr-penalty", "0"),
        ("--ibkr-md-expiry", "-1"),
        ("--ibkr-session-timeout", "0"),
    ):
        done = run_mock(
            "--binance-port", "0", "--ibkr-port", "0", flag, value, "--env-file", env_file
        )
        assert done.returncode == 2 and flag in done.stderr, (flag, done.stderr)
