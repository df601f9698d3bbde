"""The benchmark harness's figures: percentiles, ratios, drift and the table."""

from __future__ import annotations

import math

import pytest

from bench.stats import Row, drift, format_table, percentile, rate, ratio, summarize_ms


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 25) == pytest.approx(1.75)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 99.9) == 7.0


def test_percentile_tail_of_a_uniform_range() -> None:
    values = [float(v) for v in range(1, 1001)]
    assert percentile(values, 99) == pytest.approx(990.01)
    assert percentile(values, 99.9) == pytest.approx(999.001)


@pytest.mark.parametrize("q", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_percentile_rejects_no_values() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_rate_and_ratio() -> None:
    assert rate(50_000, 2.0) == 25_000
    assert rate(10, 0.0) == 0.0
    assert ratio(40_000, 50_000) == pytest.approx(0.8)
    assert math.isnan(ratio(1.0, 0.0))


def test_summarize_ms_converts_nanoseconds() -> None:
    summary = summarize_ms([1_000_000, 2_000_000, 3_000_000])
    assert summary["n"] == 3
    assert summary["p50"] == pytest.approx(2.0)
    assert summary["max"] == pytest.approx(3.0)
    assert summarize_ms([]) == {"n": 0.0}


def test_drift_ignores_warmup_and_measures_largest_departure() -> None:
    samples = [10.0, 50.0, 100.0, 100.0, 105.0, 98.0, 100.0, 101.0, 100.0, 100.0]
    assert drift(samples, warmup_fraction=0.2) == pytest.approx(0.05)
    assert drift([100.0, 100.0, 100.0]) == 0.0


def test_drift_needs_samples_after_warmup() -> None:
    with pytest.raises(ValueError):
        drift([1.0, 2.0], warmup_fraction=0.5)


def test_table_has_one_line_per_row_and_marks_targets() -> None:
    rows = [
        Row("ingest", "frames/s", "60,000", "bare 70,000", ">= 50,000", True),
        Row("processor", "frames/s", "16,000", "", ">= 50,000", False),
        Row("recovery", "takeover", "5,700 ms"),
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| bench")
    assert "| yes |" in lines[2]
    assert "| NO  |" in lines[3]
    assert lines[4].rstrip().endswith("|     |")
    assert len({len(line) for line in lines}) == 1  # columns aligned
