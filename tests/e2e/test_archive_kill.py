"""kill -9 of the archive at each step of a roll, and at random times: every entry in one file.

A real ``redis-server`` and the archive as a real process. In the first test a small driver runs
the stage with a hook that SIGKILLs its own process right after a given step (write, record,
ack) of its second roll; in the second the stage (``python -m tickpipe.archive``) is killed at
random moments (the seed is printed) while entries keep arriving. After a clean final run every
entry added is in exactly one Parquet file, in stream order, and nothing is pending. Last,
``tickpipe up`` with the archive on runs it as a stage of its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import REPO, RedisServer, wait_for
from tickpipe.archive.files import read_rows
from tickpipe.common.names import GROUP_ARCHIVE, Keys, Partition

P = Partition("binance", 0)
DRIVER = """
import asyncio, os, signal, sys
import redis
from tickpipe.archive.shell import run
from tickpipe.common.settings import load_settings

step, stream = sys.argv[1], sys.argv[2]
seen = {"rolls": 0, "n": 0}

def on_step(at, name):
    if name != stream:
        return
    if at == "acked" and seen["rolls"] == 0:  # the first roll is done: more entries arrive
        seen["rolls"] = 1
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for n in range(120, 180):
            client.xadd(stream, {"v": "1", "symbol": "BTCUSDT", "trade_id": str(n)})
        client.close()
    if at == step:
        seen["n"] += 1
        if seen["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(run(load_settings(dotenv_path=None), asyncio.Event(), on_step=on_step, block_ms=50))
"""


def _env(url: str, root: Path, roll_s: str) -> dict[str, str]:
    return {
        **os.environ, "REDIS_URL": url, "TICKPIPE_NAMESPACE": "ak", "TICKPIPE_SYMBOLS": "BTCUSDT",
        "TICKPIPE_ARCHIVE": "on", "TICKPIPE_ARCHIVE_DIR": str(root),
        "TICKPIPE_ARCHIVE_ROLL_S": roll_s, "TICKPIPE_BATCH_SIZE": "50",
        "TICKPIPE_HEALTH_INTERVAL_S": "0.2", "PYTHONPATH": str(REPO),
    }  # fmt: skip


def _add(client: redis.Redis, stream: str, start: int, count: int) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for n in range(start, start + count):
        pipe.xadd(stream, {"v": "1", "symbol": "BTCUSDT", "trade_id": str(n), "price": "1.5",
                           "qty": "2", "ts_event": str(1_733_300_000_000_000_000 + n)})  # fmt: skip
    return [i.decode() for i in pipe.execute()]


def _rolled(client: redis.Redis) -> bool:
    """The running archive has rolled a segment (its health record says so)."""
    for key in client.keys("ak:health:archive:*"):
        record = client.get(key)
        if record and json.loads(record).get("archive_segments", 0) >= 1:
            return True
    return False


def _archived_ids(root: Path) -> list[str]:
    return [r["_id"] for r in read_rows(root, "binance", "trades", None, None, None)]


def _finish(url: str, root: Path, client: redis.Redis, stream: str, ids: list[str]) -> None:
    """Run the stage cleanly until every entry is acked, stop it, check exactly once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe.archive", "--env-file", "/dev/null"],
        env=_env(url, root, "0.3"), cwd=REPO,
    )  # fmt: skip
    try:

        def drained() -> bool:
            groups = {g["name"]: g for g in client.xinfo_groups(stream)}
            group = groups.get(GROUP_ARCHIVE.encode())
            return (
                bool(group)
                and group["last-delivered-id"].decode() == ids[-1]
                and (group["pending"] == 0)
            )

        wait_for(drained, timeout_s=60, what="the archive to archive every entry")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    got = _archived_ids(root)
    assert len(got) == len(set(got)), f"{len(got) - len(set(got))} entries archived twice"
    assert got == ids, f"{len(set(ids) - set(got))} entries missing"


@pytest.mark.parametrize("step", ["written", "recorded", "acked"])
def test_kill_9_right_after_each_step_loses_and_repeats_nothing(
    redis_server: RedisServer, tmp_path: Path, step: str
) -> None:
    root = tmp_path / "archive"
    stream = Keys("ak").trades(P)
    with redis_server.client() as client:
        ids = _add(client, stream, 0, 120)
        # Rolls every 0.05 s: the first roll completes, the driver adds entries, and its
        # second roll is killed right after ``step``.
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, step, stream],
            env=_env(redis_server.url, root, "0.05"), cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL, "the driver was not killed at the step"
        ids = [e[0].decode() for e in client.xrange(stream)]  # the driver added some too
        ids += _add(client, stream, 180, 80)
        _finish(redis_server.url, root, client, stream, ids)


def test_kill_9_at_random_times_while_entries_arrive(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    root = tmp_path / "archive"
    stream = Keys("ak").trades(P)
    ids: list[str] = []
    with redis_server.client() as client:
        for _ in range(4):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tickpipe.archive", "--env-file", "/dev/null"],
                env=_env(redis_server.url, root, "0.1"), cwd=REPO,
            )  # fmt: skip
            ids += _add(client, stream, len(ids), 50)
            wait_for(lambda: _rolled(client), timeout_s=60, what="a roll of this run")
            for _ in range(rng.randint(3, 8)):
                ids += _add(client, stream, len(ids), rng.randint(20, 200))
                time.sleep(rng.uniform(0.01, 0.2))  # the kill moment, drawn from the seed
            proc.kill()
            proc.wait()
            client.delete(*client.keys("ak:health:archive:*"))  # the killed one's record
        _finish(redis_server.url, root, client, stream, ids)


def test_tickpipe_up_runs_the_archive_when_it_is_on(tmp_path: Path) -> None:
    # The archive runs as its own process under its own Redis user; what the processor wrote
    # while it ran is in the archive's files when everything has stopped.
    data = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", TICKPIPE_ARCHIVE="on",
               TICKPIPE_ARCHIVE_ROLL_S="2")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe", "up", "--duration", "15", "--data-dir", str(data),
         "--rate", "50", "--no-dashboard"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    final = out[out.rindex("final status") :]
    assert "archive[up-archive" in final and "archive_entries=" in final, final
    log = (data / "logs" / "archive.log").read_text()
    assert '"level":"error"' not in log and "NOPERM" not in log, log[-2000:]
    trades = read_rows(data / "archive", "binance", "trades", None, None, None)
    assert len(trades) > 50, f"{len(trades)} trades archived"
    ids = [(r["_source"], r["_id"]) for r in trades]
    assert len(ids) == len(set(ids))
