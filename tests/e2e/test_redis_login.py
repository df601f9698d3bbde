"""A wrong Redis password is one clear configuration error (exit 2), never a retry loop."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import REPO, free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stage", ["ingestor", "processor", "trader"])
def test_stage_with_a_wrong_redis_password_exits_2_naming_redis_url(
    stage: str, tmp_path: Path
) -> None:
    binary = shutil.which("redis-server")
    assert binary
    port = free_port()
    server = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", "right-pw",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port, password="right-pw")

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, timeout_s=15, what="redis-server")
        client.close()
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "REDIS_URL": f"redis://:wrong-pw@127.0.0.1:{port}/0",
            "BINANCE_API_KEY": "login-test-key",
            "BINANCE_API_SECRET": "login-test-secret",
            "TICKPIPE_BINANCE_WS_URL": "ws://127.0.0.1:9",
            "TICKPIPE_BINANCE_WS_API_URL": "ws://127.0.0.1:9/ws-api/v3",
        }
        result = subprocess.run(
            [sys.executable, "-m", f"tickpipe.{stage}"], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "check the user and password in REDIS_URL" in result.stderr
    assert "wrong-pw" not in result.stderr + result.stdout
