"""A processor member frozen with SIGSTOP and thawed right after a takeover loses no trade.

A real ``redis-server`` and two real ``python -m tickpipe.processor`` members whose
``REDIS_URL`` sets
``socket_timeout=30``, so a frozen member's connection survives the freeze and its commands go
out the moment it thaws. A feeder appends live trades to ``raw`` all along. The lease holder is
stopped with SIGSTOP at a random moment while it reads and processes, the other member takes the
partition over when the lease expires, and the frozen one gets SIGCONT right after. Then the
partition changes hands once more (the second member stops), so whatever the thawed member took
into its pending list is claimed and settled. Every trade in ``raw`` must be in ``trades``
exactly once. The timings are drawn per run and printed (``TICKPIPE_THAW_SEED`` replays one).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import orjson
import pytest
import redis

from tests.e2e.chaos_support import freeze_through_takeover
from tests.e2e.conftest import Processes, RedisServer, group_idle, wait_for
from tickpipe.common.names import GROUP_PROCESSOR, Keys, Partition
from tickpipe.common.schema import RawFrame

pytestmark = pytest.mark.e2e

NS = "thaw"
KEYS = Keys(NS)
P = Partition("binance", 0)
LEASE_S = 5.0  # the processor's default lease period


class Feeder(threading.Thread):
    """Append one live BTCUSDT trade per id to ``raw``, ``per_s`` a second, until stopped."""

    def __init__(self, url: str, per_s: int = 2000) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.per_s = per_s
        self.next_id = 1
        self.halt = threading.Event()

    def run(self) -> None:
        tick = 0.01
        while not self.halt.is_set():
            now_ns = time.time_ns()
            pipe = self.client.pipeline(transaction=False)
            for _ in range(int(self.per_s * tick)):
                trade_id, self.next_id = self.next_id, self.next_id + 1
                payload = {
                    "e": "trade", "E": now_ns // 1_000_000, "s": "BTCUSDT", "t": trade_id,
                    "p": f"{60000 + trade_id % 13}.5", "q": "0.001", "T": now_ns // 1_000_000,
                    "m": trade_id % 2 == 0,
                }  # fmt: skip
                data = orjson.dumps({"stream": "btcusdt@trade", "data": payload}).decode()
                frame = RawFrame("ws", "binance", "feed/run1.1", trade_id, now_ns, data, "market")
                pipe.xadd(KEYS.raw(P), frame.to_fields())  # type: ignore[arg-type]
            pipe.execute()
            self.halt.wait(tick)


def _trade_ids(client: redis.Redis, stream: str, field: str) -> Counter[int]:
    out: Counter[int] = Counter()
    last = "-"
    while True:
        batch = client.xrange(stream, min=last, count=5000)
        for _, fields in batch:
            if field == "data":
                out[orjson.loads(fields[b"data"])["data"]["t"]] += 1
            else:
                out[int(fields[field.encode()])] += 1
        if len(batch) < 5000:
            return out
        last = "(" + batch[-1][0].decode()


def _lease(client: redis.Redis) -> str | None:
    value = client.get(KEYS.lease(P))
    return value.decode() if value else None


def test_a_member_thawed_right_after_a_takeover_loses_and_repeats_no_trade(
    redis_server: RedisServer, processes: Processes
) -> None:
    seed = int(os.environ.get("TICKPIPE_THAW_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    freeze_after_s, thaw_after_ms = rng.uniform(0.5, 2.5), rng.uniform(0, 100)
    print(f"TICKPIPE_THAW_SEED={seed}: SIGSTOP after {freeze_after_s:.2f} s of ownership, "
          f"SIGCONT {thaw_after_ms:.0f} ms after the takeover")  # fmt: skip
    client = redis_server.client()
    env = {
        "REDIS_URL": redis_server.url + "?socket_timeout=30",
        "TICKPIPE_NAMESPACE": NS,
        "TICKPIPE_SYMBOLS": "BTCUSDT",
        "TICKPIPE_BATCH_SIZE": "500",
    }
    feeder = Feeder(redis_server.url)
    feeder.start()
    try:
        first = processes.start(
            "proc-a", "-m", "tickpipe.processor", env={**env, "TICKPIPE_INSTANCE": "a"}
        )
        wait_for(lambda: _lease(client) == "a", timeout_s=30, what="member a to own the lease")
        second = processes.start(
            "proc-b", "-m", "tickpipe.processor", env={**env, "TICKPIPE_INSTANCE": "b"}
        )
        time.sleep(freeze_after_s)  # the moment to freeze is the drawn timing itself
        freeze_through_takeover(
            first.proc, lambda: _lease(client) == "b", thaw_after_s=thaw_after_ms / 1000,
            timeout_s=4 * LEASE_S, what="b to take over",
        )  # fmt: skip
        # the thawed member finds out it lost the lease (b keeps processing meanwhile)
        wait_for(lambda: "lease lost" in first.log.read_text(errors="replace"),
                 timeout_s=4 * LEASE_S, what="the thawed member to see its lease lost")  # fmt: skip
        # b leaves: a takes the partition back and claims whatever its thawed reads took.
        assert second.stop() == 0, second.tail()
        wait_for(lambda: _lease(client) == "a", timeout_s=4 * LEASE_S, what="a to take over")
    finally:
        feeder.halt.set()
        feeder.join(10)
    wait_for(lambda: group_idle(client, KEYS.raw(P), GROUP_PROCESSOR), timeout_s=60,
             what="member a to drain raw")  # fmt: skip
    assert first.stop() == 0, first.tail()

    raw = _trade_ids(client, KEYS.raw(P), "data")
    trades = _trade_ids(client, KEYS.trades(P), "trade_id")
    assert len(raw) == feeder.next_id - 1 and len(raw) > 2000
    missing = sorted(set(raw) - set(trades))
    twice = sorted(i for i, n in trades.items() if n > 1)
    assert not missing, f"seed {seed}: {len(missing)} trades missing, e.g. {missing[:10]}"
    assert not twice, f"seed {seed}: {len(twice)} trades written twice, e.g. {twice[:10]}"
    assert trades == raw
