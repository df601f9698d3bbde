"""The mock's loop-lag probe (``python -m bench.mock_lag``): it measures a running mock."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bench.mock_lag import main, measure


def test_it_reports_the_trades_received_and_the_loop_lag(tmp_path: Path) -> None:
    line = asyncio.run(measure(400.0, 1.0, tmp_path / "gt.jsonl"))
    found = re.match(r"([\d,]+) trades/s received; CPU [\d.]+ us per trade", line)
    assert found, line
    assert int(found.group(1).replace(",", "")) > 0
    assert re.search(r"loop lag p50 [\d.]+ / p99 [\d.]+ / max [\d.]+ ms$", line), line
    assert (tmp_path / "gt.jsonl").stat().st_size > 0  # the mock logged what it sent


@pytest.mark.parametrize("argv", [["--rate", "0"], ["--seconds", "-1"]])
def test_a_rate_or_window_that_is_not_positive_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "must be positive" in capsys.readouterr().err
