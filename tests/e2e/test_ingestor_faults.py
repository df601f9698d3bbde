"""End to end: the real ingestor (and processor) against the mock exchange's fault plan.

* a dropped connection comes back within its backoff, and the trades it missed are backfilled
  over REST: downstream every trade id appears exactly once, without a hole;
* a stalled connection (pings still answered) is marked stale and replaced within its threshold;
* Redis stopped for ~10 s mid-run: no frame is lost (every connection's sequence stays whole);
* Redis killed and restarted without the tail of its AOF: the trades it lost are found, marked
  and fetched again over REST, so every trade the mock sent is in raw.
"""

from __future__ import annotations

import json
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.chaos_support import crash_with_aof_cut, mark_aof
from tests.e2e.conftest import (
    Processes,
    RedisServer,
    Stage,
    mock_binance_env,
    post_to_mock,
    start_redis,
    wait_for,
)
from tests.rawread import raw_len_sync, rawframes
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import RawFrame, Trade

pytestmark = pytest.mark.e2e

NS = "e2ei"
KEYS = Keys(NS)
P = Partition("binance", 0)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def start(processes: Processes, redis_url: str, *extra: str, **env: str) -> tuple[Any, int]:
    _, port = processes.start_mock("--seed", "3", "--rate", "20", "--symbols", ",".join(SYMBOLS),
                                   *extra)  # fmt: skip
    processes.env.update(
        REDIS_URL=redis_url,
        TICKPIPE_NAMESPACE=NS,
        TICKPIPE_SYMBOLS=",".join(SYMBOLS),
        TICKPIPE_CHANNELS="trade",
        **mock_binance_env(port),
        **env,
    )
    ingestor = processes.start(
        "ingestor", "-m", "tickpipe.ingestor", env={"TICKPIPE_INSTANCE": "ing"}
    )
    return ingestor, port


def add_fault(port: int, fault: dict[str, Any]) -> None:
    post_to_mock(port, "faults", fault, timeout_s=5)


def raw(client: redis.Redis) -> list[RawFrame]:
    return rawframes(client.xrange(KEYS.raw(P)))


def health(client: redis.Redis) -> dict[str, Any]:
    blob = client.get(KEYS.health("ingestor", "ing"))
    return json.loads(blob) if blob else {}


def processor_idle(client: redis.Redis) -> bool:
    last = client.xinfo_stream(KEYS.raw(P))["last-generated-id"]
    for group in client.xinfo_groups(KEYS.raw(P)):
        if group["pending"] == 0 and group["last-delivered-id"] == last:
            return True
    return False


def markers(frames: list[RawFrame], event: str) -> list[RawFrame]:
    return [f for f in frames if f.kind == "marker" and json.loads(f.data)["event"] == event]


def more_trades_then_drain(
    client: redis.Redis, ingestor: Stage, processor: Stage, *, more: int
) -> None:
    """Wait for ``more`` trades, stop the ingestor, let the processor drain raw, stop it."""
    after = client.xlen(KEYS.trades(P)) + more
    wait_for(lambda: client.xlen(KEYS.trades(P)) >= after, timeout_s=15, what="more trades")
    assert ingestor.stop() == 0, ingestor.tail()
    wait_for(lambda: processor_idle(client), timeout_s=15, what="the processor to drain raw")
    assert processor.stop() == 0, processor.tail()


def test_dropped_connection_is_back_and_missed_trades_are_backfilled_exactly_once(
    redis_server: RedisServer, processes: Processes
) -> None:
    ingestor, port = start(processes, redis_server.url)
    processor = processes.start(
        "processor", "-m", "tickpipe.processor", env={"TICKPIPE_INSTANCE": "proc"}
    )
    client = redis_server.client()
    wait_for(lambda: client.xlen(KEYS.trades(P)) >= 40, timeout_s=20, what="40 trades")
    add_fault(port, {"type": "trade_gap", "symbol": "BTCUSDT", "count": 5})
    add_fault(port, {"type": "drop", "kind": "stream", "at": 0.5})
    wait_for(lambda: health(client).get("reconnects", 0) >= 1, timeout_s=10,
             what="the ingestor to reconnect")  # fmt: skip
    wait_for(lambda: health(client).get("rest_backfilled", 0) >= 5, timeout_s=15,
             what="missed trades backfilled")  # fmt: skip
    # ... and a few seconds more of live trades after the reconnect
    more_trades_then_drain(client, ingestor, processor, more=60)
    ids: dict[str, list[int]] = defaultdict(list)
    for _, fields in client.xrange(KEYS.trades(P)):
        trade = Trade.from_fields(fields)
        ids[trade.symbol].append(int(trade.trade_id))
    for symbol, got in ids.items():
        assert len(got) == len(set(got)), f"{symbol}: duplicated trades downstream"
        assert sorted(got) == list(range(min(got), max(got) + 1)), f"{symbol}: a hole"
    assert markers(raw(client), "gap")


def test_stalled_connection_is_replaced_within_its_stale_threshold(
    redis_server: RedisServer, processes: Processes
) -> None:
    _, port = start(processes, redis_server.url)
    client = redis_server.client()
    wait_for(lambda: health(client).get("frames_received", 0) >= 100, timeout_s=20,
             what="100 frames")  # fmt: skip
    stalled_at = time.time_ns()
    add_fault(port, {"type": "stall", "kind": "stream", "duration": 4})
    found = wait_for(lambda: markers(raw(client), "stale"), timeout_s=10, what="a stale marker")
    assert isinstance(found, list)
    took_s = (found[0].ts_recv - stalled_at) / 1e9
    assert took_s < 4.0, f"stale detected only after {took_s:.1f} s"
    wait_for(lambda: health(client).get("reconnects", 0) >= 1, timeout_s=10, what="a reconnect")
    frames_then = health(client)["frames_received"]
    wait_for(lambda: health(client)["frames_received"] > frames_then + 50, timeout_s=15,
             what="frames flowing again after the stall")  # fmt: skip


def test_redis_stopped_for_ten_seconds_loses_no_frame(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    ingestor, _ = start(processes, redis_server.url)
    client = redis_server.client()
    wait_for(lambda: raw_len_sync(client, KEYS.raw(P)) >= 100, timeout_s=20, what="100 raw frames")
    redis_server.proc.send_signal(signal.SIGTERM)
    redis_server.proc.wait(10)
    time.sleep(10)  # the outage itself (nothing to poll: Redis is down on purpose)
    restarted = start_redis(redis_server.data_dir, redis_server.port)
    try:
        client = restarted.client()
        wait_for(lambda: health(client).get("redis_up") is True, timeout_s=15,
                 what="the ingestor to see Redis again")  # fmt: skip
        written = health(client)["frames_received"]
        wait_for(lambda: raw_len_sync(client, KEYS.raw(P)) >= written, timeout_s=15,
                 what="the buffered frames in Redis")  # fmt: skip
        assert ingestor.stop() == 0, ingestor.tail()
        frames = raw(client)
        by_conn: dict[str, list[int]] = defaultdict(list)
        for f in frames:
            if f.kind == "ws":
                by_conn[f.conn].append(f.seq)
        for conn, seqs in by_conn.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"{conn}: frames lost or reordered"
        assert sum(len(s) for s in by_conn.values()) >= written
    finally:
        restarted.proc.terminate()
        restarted.proc.wait(10)


def test_redis_restarted_without_its_aof_tail_gets_the_lost_trades_back(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    """An OS crash loses what ``appendfsync everysec`` had not yet put on disk: simulated by
    cutting the AOF back to its length of a moment before, then restarting redis-server."""
    truth_file = tmp_path / "truth.jsonl"
    ingestor, _ = start(processes, redis_server.url, "--ground-truth", str(truth_file))
    client = redis_server.client()
    wait_for(lambda: raw_len_sync(client, KEYS.raw(P)) >= 100, timeout_s=20, what="100 raw frames")
    mark = mark_aof(redis_server)
    held = raw_len_sync(client, KEYS.raw(P))
    wait_for(lambda: raw_len_sync(client, KEYS.raw(P)) >= held + 60, timeout_s=20,
             what="60 more raw frames after the cut point")  # fmt: skip
    crash_with_aof_cut(redis_server, mark)
    restarted = start_redis(redis_server.data_dir, redis_server.port)
    try:
        client = restarted.client()
        assert raw_len_sync(client, KEYS.raw(P)) < held + 60, "the AOF cut lost nothing"
        wait_for(lambda: health(client).get("redis_losses", 0) >= 1, timeout_s=20,
                 what="the ingestor to find what Redis lost")  # fmt: skip
        wait_for(lambda: markers(raw(client), "backfill_done"), timeout_s=20,
                 what="the lost trades backfilled")  # fmt: skip
        more = raw_len_sync(client, KEYS.raw(P)) + 40
        wait_for(lambda: raw_len_sync(client, KEYS.raw(P)) >= more, timeout_s=20,
                 what="live frames again")  # fmt: skip
        assert ingestor.stop() == 0, ingestor.tail()
        frames = raw(client)
    finally:
        restarted.proc.terminate()
        restarted.proc.wait(10)
    live: dict[str, set[int]] = defaultdict(set)
    fetched: dict[str, set[int]] = defaultdict(set)
    for f in frames:
        body = json.loads(f.data)
        if f.kind == "ws" and body.get("data", {}).get("e") == "trade":
            live[body["data"]["s"]].add(body["data"]["t"])
        elif f.kind == "rest" and f.channel == "trades_backfill":
            fetched[body["symbol"]].update(t["id"] for t in body["response"])
    sent: dict[str, set[int]] = defaultdict(set)
    for line in truth_file.read_text().splitlines():
        event = json.loads(line)
        if event.get("ev") == "trade_sent" and event["stream"].endswith("@trade"):
            sent[event["symbol"]].add(event["trade_id"])
    for symbol in SYMBOLS:
        have = live[symbol] | fetched[symbol]
        first, last = min(live[symbol]), max(live[symbol])
        missing = {n for n in sent[symbol] if first <= n <= last} - have
        assert not missing, f"{symbol}: {len(missing)} trades the mock sent are not in raw"
    gaps = [json.loads(f.data) for f in markers(frames, "gap")]
    lost_gaps = [g for g in gaps if g.get("reason") == "lost by Redis"]
    assert lost_gaps, "no gap marker for what Redis lost"
    done = [json.loads(f.data) for f in markers(frames, "backfill_done")]
    for gap in lost_gaps:
        hole = set(range(gap["first_id"], gap["last_id"] + 1))
        assert hole <= fetched[gap["symbol"]] and not hole & live[gap["symbol"]]
        assert any(
            d["symbol"] == gap["symbol"] and d["first_id"] <= gap["first_id"]
            and gap["last_id"] <= d["last_id"] and d["outcome"] == "complete"
            for d in done
        ), f"no complete backfill_done marker for {gap}"  # fmt: skip
