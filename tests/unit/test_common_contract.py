"""The entries the stages exchange are defined once (common.contract) and used as defined."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import orjson

from common.contract import (
    CONTROL_ACTIONS,
    RAW_FIELDS,
    RAW_PER_FRAME,
    ControlAction,
    MarkerEvent,
    OrderEvent,
    OrderRecord,
    RawKind,
    marker_data,
    order_entry,
    raw_constants,
    subscription_entry,
)
from common.resp import encode_xadd
from common.schema import OrderIntent, RawFrame
from ingestor.subscriptions import parse_control
from ingestor.writer import APPEND_SCRIPT, encode_append, encode_raw_xadd
from processor.records import BackfillRequest, SnapshotRequest
from processor.wire import decode_flat_entries

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


def test_the_append_script_writes_every_raw_field_in_order_from_the_layout() -> None:
    script = APPEND_SCRIPT.decode()
    xadd = script[script.index("'XADD'") :].split(")")[0]
    names = [part.strip().strip("'") for part in xadd.split(",")[3::2]]
    assert names == list(RAW_FIELDS)
    frames = [RawFrame("ws", "binance", "c1", 1, 2, "x", "market")]
    assert encode_append("s", frames).count(b"$1\r\nh\r\n") == 1


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
        "common/ops.py": markers,
    }
    found = {f: sorted(_literals(REPO / f) & words) for f, words in files.items()}
    assert {f: names for f, names in found.items() if names} == {}
