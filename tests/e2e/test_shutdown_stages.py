"""SIGTERM under load, per stage: the stage finishes its batch, exits 0 and loses nothing.

* ingestor: every frame it received reaches the raw stream (sequence numbers per connection have
  no hole) and each connection ends with its disconnect marker;
* processor: nothing stays pending in its consumer group, and after a restart every trade of the
  backlog is in the trades stream exactly once;
* trader: every acknowledged signal has its outcome recorded, and after a restart every signal
  produced exactly one order at the mock.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Processes, RedisServer, Stage, wait_for
from tests.rawread import raw_frames_sync, raw_len_sync
from tickpipe.common.names import GROUP_PROCESSOR, GROUP_TRADER, Keys, Partition
from tickpipe.common.schema import RawFrame, Signal, Trade, decode_fields
from tickpipe.common.settings import KNOWN_KEYS
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws.ground_truth import read_ground_truth

pytestmark = pytest.mark.e2e

NS = "shut"
KEYS = Keys(NS)
P = Partition("binance", 0)
REALDATA = Path(__file__).parents[3] / "shared" / "realdata"


def _env(processes: Processes, redis_server: RedisServer) -> None:
    processes.env.update(
        REDIS_URL=redis_server.url, TICKPIPE_NAMESPACE=NS, TICKPIPE_SYMBOLS="BTCUSDT",
        BINANCE_API_KEY="shut-key", BINANCE_API_SECRET="shut-secret", TICKPIPE_ORDER_QTY="0.001",
    )  # fmt: skip
    if "TICKPIPE_MAX_ORDERS_PER_S" in KNOWN_KEYS:  # the trader's order-rate limit, out of the way
        processes.env["TICKPIPE_MAX_ORDERS_PER_S"] = "10000"


def _venue(processes: Processes, port: int) -> None:
    processes.env.update(
        TICKPIPE_BINANCE_WS_URL=f"ws://127.0.0.1:{port}",
        TICKPIPE_BINANCE_WS_API_URL=f"ws://127.0.0.1:{port}/ws-api/v3",
        TICKPIPE_BINANCE_REST_URL=f"http://127.0.0.1:{port}",
    )


def _until(stage: Stage, condition: Callable[[], object], what: str, timeout_s: float = 30) -> None:
    """Wait for ``condition`` while ``stage`` runs; fail at once with its log if it exits."""
    wait_for(lambda: condition() or stage.proc.poll() is not None, timeout_s=timeout_s, what=what)
    assert stage.proc.poll() is None, f"{stage.name} exited early:\n{stage.tail()}"


def _pending(client, stream: str, group: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.xpending(stream, group)["pending"])


def _group_done(client, stream: str, group: str) -> bool:  # type: ignore[no-untyped-def]
    info = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    g = info.get(group)
    last = client.xinfo_stream(stream)["last-generated-id"]
    return bool(g) and int(g["pending"]) == 0 and g["last-delivered-id"] == last


def test_ingestor_sigterm_flushes_every_frame(
    redis_server: RedisServer, processes: Processes
) -> None:
    _env(processes, redis_server)
    _, port = processes.start_mock("--seed", "2", "--rate", "2000", "--symbols", "BTCUSDT")
    _venue(processes, port)
    ingestor = processes.start("ingestor", "-m", "tickpipe.ingestor")
    client = redis_server.client()
    _until(ingestor, lambda: raw_len_sync(client, KEYS.raw(P)) >= 1500, "1500 raw frames")
    assert ingestor.stop() == 0, ingestor.tail()
    seqs: dict[str, list[int]] = defaultdict(list)
    last: dict[str, RawFrame] = {}
    for stream in (KEYS.raw(P), KEYS.private_raw("binance")):
        for _, fields in raw_frames_sync(client, stream):
            frame = RawFrame.from_fields(fields)
            if frame.kind == "rest":  # one-shot requests (snapshots) have no connection life
                continue
            if frame.kind != "marker":
                seqs[frame.conn].append(frame.seq)
            last[frame.conn] = frame
    assert sum(map(len, seqs.values())) >= 1500
    for conn, numbers in seqs.items():
        # A connection's frames are numbered 1..n: a hole would be a frame lost on the way.
        assert numbers == list(range(1, len(numbers) + 1)), conn
        marker = json.loads(last[conn].data)
        assert last[conn].kind == "marker" and marker["event"] == "disconnect", last[conn]
        assert marker["frames"] == len(numbers), marker
    assert not list(client.scan_iter(match=KEYS.health_pattern("ingestor")))


def _backlog(count: int) -> list[RawFrame]:
    out = []
    with gzip.open(REALDATA / "hftbacktest" / "spot" / "btcusdt_20240808.gz", "rt") as lines:
        for seq, line in enumerate(lines):
            recv, _, frame = line.rstrip("\n").partition(" ")
            if frame.startswith('{"stream"'):
                out.append(RawFrame("ws", "binance", "c1", seq, int(recv), frame))
            if len(out) == count:
                return out
    raise AssertionError("capture too short")


def test_processor_sigterm_leaves_nothing_pending(
    redis_server: RedisServer, processes: Processes
) -> None:
    _env(processes, redis_server)
    client = redis_server.client()
    frames = _backlog(30_000)
    pipe = client.pipeline(transaction=False)
    for frame in frames:
        pipe.xadd(KEYS.raw(P), frame.to_fields())  # type: ignore[arg-type]
    pipe.execute()
    trade_ids = [json.loads(f.data)["data"]["t"] for f in frames if '@trade"' in f.data]
    env = {"TICKPIPE_INSTANCE": "p1", "TICKPIPE_BATCH_SIZE": "200"}
    processor = processes.start("processor", "-m", "tickpipe.processor", env=env)
    _until(processor, lambda: client.xlen(KEYS.trades(P)) >= 200, "the first trades")
    assert processor.stop() == 0, processor.tail()
    assert _pending(client, KEYS.raw(P), GROUP_PROCESSOR) == 0
    assert not client.get(KEYS.lease(P)), "the lease is released on a clean stop"
    partial = client.xlen(KEYS.trades(P))
    assert partial < len(trade_ids), "stopped before the backlog was done (else: no load)"
    again = processes.start("processor-2", "-m", "tickpipe.processor", env=env)
    wait_for(lambda: _group_done(client, KEYS.raw(P), GROUP_PROCESSOR), timeout_s=60,
             what="the restarted processor to finish the backlog")  # fmt: skip
    assert again.stop() == 0, again.tail()
    got = [int(decode_fields(f)["trade_id"]) for _, f in client.xrange(KEYS.trades(P))]
    assert Counter(got) == Counter(trade_ids)


def _signal(n: int) -> Signal:
    return Signal(
        signal_id=f"shut|{n}", venue="binance", symbol="BTCUSDT", strategy="test",
        action="place", side="buy" if n % 2 == 0 else "sell", qty="0.001", price="60000",
        reason="shutdown test", cause=f"1-{n}", ts_event=1, ts_recv=1, ts_signal=1,
    )  # fmt: skip


def test_trader_sigterm_records_every_acknowledged_signal(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    truth_path = tmp_path / "truth.jsonl"
    # A slow venue (each WS-API answer held 40 ms) keeps orders in flight when the stop comes.
    slow = tmp_path / "slow-venue.json"
    slow.write_text(json.dumps([{"type": "delay", "ms": 40, "kind": "api"}]))
    _env(processes, redis_server)
    _, port = processes.start_mock(
        "--seed", "4", "--rate", "20", "--symbols", "BTCUSDT", "--ground-truth", str(truth_path),
        "--faults", str(slow),
    )  # fmt: skip
    _venue(processes, port)
    client = redis_server.client()
    # The market the trader prices the orders at: one trade, fresh for the whole test.
    processes.env["TICKPIPE_MAX_PRICE_AGE_S"] = "600"
    now = time.time_ns()
    trade = Trade("binance", "BTCUSDT", "1", "60000", "0.1", "buy", now, now)
    client.xadd(KEYS.trades(P), trade.to_fields())  # type: ignore[arg-type]
    signals = [_signal(n) for n in range(50)]
    for signal in signals:
        client.xadd(KEYS.signals(P), signal.to_fields())  # type: ignore[arg-type]
    trader = processes.start("trader", "-m", "tickpipe.trader", env={"TICKPIPE_INSTANCE": "t1"})
    _until(trader, lambda: client.xlen(KEYS.orders("binance")) >= 12, "orders")
    assert trader.stop() == 0, trader.tail()
    # Every signal acknowledged has its outcome recorded; one delivered but not handled yet stays
    # pending for this consumer, which takes it up first when it restarts.
    pending = {
        p["message_id"].decode()
        for p in client.xpending_range(KEYS.signals(P), GROUP_TRADER, "-", "+", 1000)
    }
    [group] = client.xinfo_groups(KEYS.signals(P))
    delivered = [
        (i.decode(), decode_fields(f)["signal_id"])
        for i, f in client.xrange(KEYS.signals(P), max=group["last-delivered-id"])
    ]
    acked = {signal_id for entry_id, signal_id in delivered if entry_id not in pending}
    events: dict[str, list[str]] = defaultdict(list)
    for _, fields in client.xrange(KEYS.orders("binance")):
        record = decode_fields(fields)
        events[record.get("signal_id", "")].append(record.get("event", ""))
    assert acked, "nothing was handled before the stop"
    for signal_id in acked:
        assert [e for e in events[signal_id] if e != "intent"], (signal_id, events[signal_id])
    assert len(acked) < len(signals), "stopped before every signal was handled"
    again = processes.start("trader-2", "-m", "tickpipe.trader", env={"TICKPIPE_INSTANCE": "t1"})
    wait_for(lambda: _group_done(client, KEYS.signals(P), GROUP_TRADER), timeout_s=60,
             what="the restarted trader to handle every signal")  # fmt: skip
    assert again.stop() == 0, again.tail()
    orders = Counter(o["client_order_id"] for o in read_ground_truth(truth_path).orders())
    expected = {client_order_id_for(s.signal_id) for s in signals}
    assert dict(orders) == dict.fromkeys(expected, 1)
