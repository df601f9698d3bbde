"""The bench's command line: the latency rates to run."""

from __future__ import annotations

import pytest

from bench.__main__ import build_parser
from bench.latency import RATES


def test_latency_rates_default_to_the_three_rates_and_take_a_list() -> None:
    assert build_parser().parse_args([]).latency_rates == RATES
    args = build_parser().parse_args(["--latency-rates", "1000,5000", "latency"])
    assert args.latency_rates == (1000, 5000)


@pytest.mark.parametrize("text", ["0", "x", "1000,", "-5"])
def test_a_rate_that_is_not_a_positive_whole_number_exits_2(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([f"--latency-rates={text}", "latency"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --latency-rates: " in err
    assert "rates must be positive" in err or "not a list of whole trades/s" in err
