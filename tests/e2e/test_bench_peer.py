"""`python -m bench --quick peer` runs cryptofeed and tickpipe on one feed and counts every trade.

The figures are not checked (the machine is shared); the counts are: the bench compares what
each side stored in Redis with the trades the feed sent, and prints a row for any difference.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TRADES = 3000


def test_quick_peer_bench_stores_every_trade_once_on_each_side() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--peer-trades", str(TRADES), "peer"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| peer")]
    metrics = [row.split("|")[2].strip() for row in rows]
    assert f"cryptofeed trades/s end to end ({TRADES:,} trades, every trade once)" in metrics, (
        proc.stdout
    )
    for metric in (
        "tickpipe raw frames/s (ingestor alone)",
        "tickpipe trades/s end to end (ingestor + processor)",
        "raw frames/s / cryptofeed trades/s",
        "trades/s end to end / cryptofeed",
        "tickpipe end to end: CPU s per million trades",
    ):
        assert metric in metrics, proc.stdout
    assert not any("FAILED" in row or "exact count" in row for row in rows), proc.stdout
