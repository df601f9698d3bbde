"""`python -m bench --quick ingest` runs from the checkout's code and prints its table (no
thresholds), leaving nothing in the directory it runs from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_quick_ingest_bench_prints_its_table_with_every_frame_counted(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "ingest"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ingest")]
    metrics = [row.split("|")[2].strip() for row in rows]
    assert "ingestor frames/s (150,000 frames, zero loss)" in metrics, proc.stdout
    assert "ingestor / bare" in metrics
    assert not any("FAILED" in row or "exact count" in row for row in rows), proc.stdout
    # its processes keep their data (the ingestor's spill journal) in the bench's own directory
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))
