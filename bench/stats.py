"""Compute the benchmark figures (percentiles, ratios, flatness) and print the table (pure)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Row",
    "drift",
    "format_table",
    "percentile",
    "positive_counts",
    "rate",
    "ratio",
    "summarize_ms",
]


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``values`` by linear interpolation.

    Raises ValueError on an empty sequence or ``q`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(ordered[lo])
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rate(count: int, seconds: float) -> float:
    """Return ``count / seconds`` (0 when no time passed)."""
    return count / seconds if seconds > 0 else 0.0


def ratio(value: float, reference: float) -> float:
    """Return ``value / reference``; ``nan`` when the reference is not positive."""
    return value / reference if reference > 0 else math.nan


def summarize_ms(latencies_ns: Sequence[int]) -> dict[str, float]:
    """Return count, p50, p99, p99.9 and max of nanosecond latencies, in milliseconds."""
    if not latencies_ns:
        return {"n": 0.0}
    ms = [v / 1e6 for v in latencies_ns]
    return {
        "n": float(len(ms)),
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "p99.9": percentile(ms, 99.9),
        "max": max(ms),
    }


def drift(samples: Sequence[float], warmup_fraction: float = 0.2) -> float:
    """Return how far the samples after warm-up stray from their first value, as a fraction.

    The first ``warmup_fraction`` of the samples is dropped; the result is
    ``max(|s - s0|) / s0`` over the rest (``s0`` the first sample after warm-up), so 0.1 means
    the value moved by 10 %. Raises ValueError with fewer than two samples after warm-up.
    """
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError("warmup_fraction must be within [0, 1)")
    rest = list(samples[int(len(samples) * warmup_fraction) :])
    if len(rest) < 2:
        raise ValueError("need at least two samples after warm-up")
    base = rest[0]
    if base <= 0:
        return math.nan
    return max(abs(s - base) for s in rest) / base


@dataclass(frozen=True)
class Row:
    """One line of the table: what, the figure, its reference, the target and whether it is met."""

    bench: str
    metric: str
    value: str
    reference: str = ""
    target: str = ""
    met: bool | None = None


def format_table(rows: Sequence[Row]) -> str:
    """Render rows as one Markdown table."""
    head = ("bench", "metric", "value", "reference (same run)", "target", "met")
    body = [
        (
            r.bench,
            r.metric,
            r.value,
            r.reference,
            r.target,
            "" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |" for b in body
    ]
    return "\n".join(lines)


def positive_counts(parser: argparse.ArgumentParser, option: str, text: str) -> list[int]:
    """Return the comma-separated whole numbers of ``option`` (``1,10,200``), each at least 1;
    anything else is the parser's usage error (exit code 2)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        parser.error(f"{option} {text!r}: give whole numbers, e.g. 1,10,200")
    if min(counts) < 1:
        parser.error(f"{option} must be positive")
    return counts
