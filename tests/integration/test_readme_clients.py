"""The README's client examples run as written against the mock exchange, as real processes.

The mock runs with the README's command line, on free ports rather than 9443-9445 (other tests
may hold those): the only change made to each snippet is that host:port.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.mock_cli import REPO, mock_env, mock_process


def snippets() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Embedding the venue clients") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def mock_args() -> list[str]:
    """The mock's options from the README's command line, with every port made free (``0``)."""
    text = (REPO / "README.md").read_text()
    command = re.search(r"`python -m tickpipe\.mock_ws (--binance-port 9443[^`]*)`", text)
    assert command is not None, "the README no longer shows the mock's command"
    args = command.group(1).split()
    return ["0" if arg in ("9443", "9444", "9445") else arg for arg in args]


def run_snippet(code: str, tmp_path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=mock_env(), capture_output=True,
        text=True, timeout=90, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_readme_shows_one_example_per_venue() -> None:
    found = snippets()
    assert len(found) == 3
    assert "BinanceClient" in found[0] and "AlpacaClient" in found[1] and "IbkrClient" in found[2]


def test_the_readme_examples_trade_and_cancel_on_the_mock(tmp_path: Path) -> None:
    with mock_process(tmp_path, *mock_args()) as mock:
        binance_port, alpaca_port = mock.ready["binance_port"], mock.ready["alpaca_port"]
        binance, alpaca, ibkr = snippets()
        out = run_snippet(binance.replace("127.0.0.1:9443", f"127.0.0.1:{binance_port}"), tmp_path)
        lines = out.splitlines()
        assert lines[0].startswith("trade BTCUSDT ")
        assert lines[1] == "market order FILLED 0.00100000"
        assert lines[2] == "limit order NEW"
        assert lines[-1] == "order update readme-limit-1 CANCELED"
        out = run_snippet(alpaca.replace("127.0.0.1:9444", f"127.0.0.1:{alpaca_port}"), tmp_path)
        assert "market order" in out and "limit order NEW" in out
        assert out.splitlines()[-1] == "order update readme-limit-2 CANCELED"
        out = run_snippet(
            ibkr.replace("127.0.0.1:9445", f"127.0.0.1:{mock.ready['ibkr_port']}"), tmp_path
        )
        lines = out.splitlines()
        assert lines[0].startswith("quote AAPL ")
        assert lines[1:3] == ["market order NEW", "limit order NEW"]
        assert lines[-1] == "order update readme-limit-3 CANCELED"
