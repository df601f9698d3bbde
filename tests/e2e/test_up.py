"""`tickpipe up` brings the whole pipeline up on its own redis-server and mock, then stops clean."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **extra)
    return env


def test_up_runs_every_stage_and_shows_data_moving(tmp_path: Path) -> None:
    data = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "12", "--data-dir", str(data),
         "--rate", "50"],
        env=_env(TICKPIPE_HYSTERESIS_BPS="1"), cwd=tmp_path,
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    final = out[out.rindex("final status") :]
    for stage in ("ingestor", "processor", "trader"):
        assert re.search(rf"{stage}\[up-{stage}[^\]]*\]\s+ok", final), final
    totals = dict(re.findall(r"(\w[\w-]*)=([\d,]+)", final.splitlines()[1]))
    assert int(totals["trades"].replace(",", "")) > 100, final
    assert int(totals["bars1s"].replace(",", "")) > 0, final
    assert int(totals["orders"].replace(",", "")) > 0, final
    # The mock spoke TLS, as the venues do, and the stages trusted its generated CA.
    assert re.search(r"mock exchange: binance wss://127\.0\.0\.1:\d+, CA file \S+ca\.pem", out), out
    assert (data / "mock-tls" / "ca.pem").is_file()
    # Every stage logged in as its own user; the passwords stay private for the next start.
    assert "a user per stage, no anonymous access" in out, out
    assert stat.S_IMODE((data / "redis.passwords").stat().st_mode) == 0o600
    # Everything it started is gone and the embedded Redis kept its data on disk.
    assert not (data / "redis.url").exists()
    assert (data / "redis" / "appendonlydir").is_dir()
    assert {p.name for p in (data / "logs").iterdir()} >= {
        "ingestor.log", "processor-1.log", "trader.log", "mock_ws.log"
    }  # fmt: skip


def test_up_reports_a_missing_redis_server_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "1", "--data-dir", str(tmp_path)],
        env=_env(PATH="/nonexistent"), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "redis-server was not found" in result.stderr
    assert "apt-get install -y redis-server" in result.stderr


def test_up_rejects_a_misspelt_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "1"],
        env=_env(TICKPIPE_SYMBOL="BTCUSDT"), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "TICKPIPE_SYMBOL (did you mean TICKPIPE_SYMBOLS?)" in result.stderr
