"""`tickpipe tail` follows a stream of a real redis-server and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, RedisServer, wait_for
from tickpipe.common.names import Keys

pytestmark = pytest.mark.e2e


def test_tail_prints_new_entries_and_stops_on_ctrl_c(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.update(REDIS_URL=redis_server.url, TICKPIPE_NAMESPACE="tl", PYTHONPATH=str(REPO))
    out = tmp_path / "tail.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "--env-file", "/dev/null", "tail", "orders"],
            env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: b"following" in out.read_bytes(), timeout_s=20, what="tail to start")
        client = redis_server.client()
        client.xadd(Keys("tl").orders("binance"), {"event": "intent", "symbol": "BTCUSDT"})
        wait_for(lambda: b"event=intent symbol=BTCUSDT" in out.read_bytes(), timeout_s=10,
                 what="the entry to be printed")  # fmt: skip
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert b"stopped" in out.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
