"""The entries the stages exchange are defined once (common.contract) and used as defined."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import fakeredis
import hiredis
import orjson
import pytest

from tickpipe.common.contract import (
    CONTROL_ACTIONS,
    RAW_FIELDS,
    RAW_FRAMES,
    RAW_PACK_MAX,
    RAW_PER_FRAME,
    ControlAction,
    MarkerEvent,
    OrderEvent,
    OrderRecord,
    RawKind,
    base_entry_id,
    entry_key,
    marker_data,
    order_entry,
    raw_constants,
    raw_entry_frames,
    subscription_entry,
)
from tickpipe.common.errors import DecodeError
from tickpipe.common.resp import encode_xadd
from tickpipe.common.schema import OrderIntent, RawFrame
from tickpipe.ingestor.subscriptions import parse_control
from tickpipe.ingestor.writer import APPEND_SCRIPT, encode_append, encode_raw_xadd
from tickpipe.processor.records import BackfillRequest, SnapshotRequest
from tickpipe.processor.wire import decode_flat_entries

REPO = Path(__file__).resolve().parents[2]


def _frame(rng: random.Random) -> RawFrame:
    text = "".join(rng.choice('ab{}":,é\r\n\\$*') for _ in range(rng.randrange(0, 40)))
    return RawFrame(
        rng.choice(list(RawKind)),
        rng.choice(["binance", "alpaca"]),
        f"c{rng.randrange(5)}",
        rng.randrange(1 << 40),
        rng.randrange(1 << 62),
        text,
        rng.choice(["", "market", "private", "trades_backfill"]),
    )


def test_raw_entries_round_trip_through_the_fast_encoder_and_decoder() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    for n in range(300):
        frame = _frame(rng)
        fields = frame.to_fields()
        assert tuple(fields) == RAW_FIELDS
        assert {**raw_constants(frame), **{k: fields[k] for k in RAW_PER_FRAME}} == fields
        assert encode_raw_xadd("s", frame) == encode_xadd("s", fields)
        flat = [part.encode() for pair in fields.items() for part in pair]
        assert decode_flat_entries([(b"1-%d" % n, flat)]) == [(f"1-{n}", frame)]


def _append_argv(stream: str, frames: list[RawFrame]) -> list[bytes]:
    """The arguments after ``numkeys`` of the ``EVAL`` that :func:`encode_append` writes."""
    reader = hiredis.Reader()
    reader.feed(encode_append(stream, frames))
    command = reader.gets()
    assert command[0] == b"EVAL" and command[1] == APPEND_SCRIPT and command[2] == b"1"
    assert command[3] == stream.encode()
    return list(command[4:])


def _runs(rng: random.Random, count: int) -> list[RawFrame]:
    """Frames as an ingestor writes them: runs of one connection's channel, markers between."""
    frames: list[RawFrame] = []
    while len(frames) < count:
        kind = rng.choice([RawKind.WS] * 4 + [RawKind.WS_BINARY, RawKind.REST, RawKind.MARKER])
        conn, channel = f"c{rng.randrange(3)}", rng.choice(["market", "trade", ""])
        for _ in range(rng.choice([1, 2, 3, 63, 64, 65, 130, rng.randrange(1, 200)])):
            size = rng.choice([0, 5, 300, 70_000])
            data = "".join(rng.choice('ab{}":,é') for _ in range(min(size, 40))) + "x" * size
            frames.append(RawFrame(kind, "binance", conn, len(frames), rng.randrange(1 << 62),
                                   data, channel))  # fmt: skip
    return frames


def test_the_append_script_packs_websocket_runs_and_every_reader_gets_every_frame_back() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeRedis(server=server)
    frames = _runs(rng, 600)
    assert redis.eval(APPEND_SCRIPT, 1, "raw", *_append_argv("raw", frames)) == []
    entries = redis.xrange("raw")
    # every frame back, in order, through the redis-py reader and through the wire decoder
    read = [
        (i, RawFrame.from_fields(f)) for e, whole in entries for i, f in raw_entry_frames(e, whole)
    ]
    assert [f for _, f in read] == frames
    flat = redis.eval("return redis.call('XRANGE', KEYS[1], '-', '+')", 1, "raw")
    assert decode_flat_entries(flat) == read
    # frame ids: the entry's own id, then ``id.k``; they sort in stream order
    keys = [entry_key(i) for i, _ in read]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert [base_entry_id(i) for i, _ in read if "." not in i] == [e.decode() for e, _ in entries]
    # what shares an entry: consecutive WebSocket frames of one channel, at most RAW_PACK_MAX
    for entry_id, whole in entries:
        names = [k.decode() for k in whole]
        frames_in = raw_entry_frames(entry_id, whole)
        if len(frames_in) == 1:
            assert tuple(names) == RAW_FIELDS  # one frame: the layout of old, unchanged
            continue
        assert len(frames_in) <= RAW_PACK_MAX and whole[RAW_FRAMES.encode()] == b"%d" % len(
            frames_in
        )
        kinds = {f[b"kind"] for _, f in frames_in}
        assert kinds <= {b"ws", b"ws-binary"} and len(kinds) == 1
        assert len({(f[b"conn"], f[b"channel"]) for _, f in frames_in}) == 1
    runs_of_ws = [f for f in frames if f.kind in (RawKind.WS, RawKind.WS_BINARY)]
    assert len(entries) < len(frames) - len(runs_of_ws) // 2  # packing did happen


def test_a_packed_entry_read_as_one_frame_is_refused_not_cut_short() -> None:
    fields = {**RawFrame("ws", "binance", "c1", 1, 2, "a", "m").to_fields(),
              "frames": "2", "seq.1": "2", "ts_recv.1": "3", "data.1": "b"}  # fmt: skip
    assert [f["data"] for _, f in raw_entry_frames("5-1", fields)] == ["a", "b"]
    with pytest.raises(DecodeError, match="frames"):
        RawFrame.from_fields(fields)
    broken = {k: v for k, v in fields.items() if k != "data.1"}
    [(entry_id, whole)] = raw_entry_frames("5-1", broken)
    assert entry_id == "5-1"
    with pytest.raises(DecodeError):
        RawFrame.from_fields(whole)  # a dead letter in the processor, not half an entry


def test_markers_and_control_entries_are_spelled_by_the_contract() -> None:
    assert orjson.loads(marker_data(MarkerEvent.GAP, symbol="A")) == {"event": "gap", "symbol": "A"}
    assert CONTROL_ACTIONS == ("subscribe", "unsubscribe", "snapshot", "backfill")
    assert subscription_entry("subscribe", ["A", "B"]) == {"action": "subscribe", "symbols": "A,B"}
    backfill = BackfillRequest("BTCUSDT", "trades", 5, 9, "hole", "1-1").to_fields()
    snapshot = SnapshotRequest("BTCUSDT", "gap").to_fields()
    assert parse_control(backfill).action == ControlAction.BACKFILL
    assert parse_control(snapshot).action == ControlAction.SNAPSHOT
    assert parse_control(subscription_entry("unsubscribe", ["X"])).action == "unsubscribe"


def test_order_entries_keep_their_layout() -> None:
    intent = OrderIntent("c1", "s1", "binance", "BTCUSDT", "buy", "LIMIT", "1", "2", 3, 4)
    assert order_entry(intent) == {**intent.to_fields(), "event": "intent"}
    record = OrderRecord.about(intent, "rejected", 7, {"reason": "limit"}).to_fields()
    assert list(record) == [
        "event", "client_order_id", "signal_id", "symbol", "side", "qty", "ts", "reason",
    ]  # fmt: skip
    assert record["event"] == OrderEvent.REJECTED and record["ts"] == "7"


def _literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def test_stages_spell_markers_and_control_actions_only_through_the_contract() -> None:
    """No string literal ``"backfill_done"``, ``"connect"``... in the stages that use them."""
    markers = {e.value for e in MarkerEvent}
    actions = {"snapshot", "backfill"}
    files = {
        "venues/binance/session.py": markers,
        "common/links.py": markers,
        "venues/alpaca/ingest.py": markers,
        "ingestor/rest.py": markers,
        "ingestor/gapwatch.py": markers,
        "ingestor/journal.py": markers,
        "ingestor/connection.py": markers,
        "ingestor/control.py": markers | actions,
        "ingestor/subscriptions.py": actions,
        "processor/markers.py": markers,
        "processor/records.py": actions,  # its "gap" is the gaps stream's kind
        "trader/tasks.py": markers,
        "tools/ops.py": markers,
    }
    found = {f: sorted(_literals(REPO / f) & words) for f, words in files.items()}
    assert {f: names for f, names in found.items() if names} == {}
