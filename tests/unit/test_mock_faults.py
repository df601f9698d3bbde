"""Unit tests for the mock's fault plan (pure: times are passed in)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tickpipe.mock_ws.faults import (
    OVERSIZED_BYTES,
    FaultError,
    FaultPlan,
    fault_list,
    load_fault_file,
    padded,
    restyle,
)

S = 1_000_000_000


def test_add_fills_defaults_and_fires_once_when_due() -> None:
    plan = FaultPlan()
    stall = plan.add({"type": "stall", "at": 2}, 0)
    assert stall.spec["duration"] == 5.0
    assert plan.due(1 * S) == []
    assert plan.due(2 * S) == [stall]
    assert plan.due(3 * S) == []
    assert stall.active(3 * S) and not stall.active(7 * S)
    assert plan.listing(3 * S)[0]["type"] == "stall"
    plan.due(8 * S)
    assert plan.listing(8 * S) == []


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "nope"},
        {"type": "rate_limit", "status": 500},
        {"type": "rate_limit", "scope": "ftp"},
        {"type": "order_error", "mode": "maybe"},
        {"type": "lifetime"},
        {"type": "trade_gap"},
        {"type": "delay", "ms": -1},
        {"type": "stall", "duration": "long"},
        {"type": "reformat", "style": "yaml"},
        {"type": "oversized", "bytes": -5},
    ],
)
def test_invalid_faults_are_refused(spec: dict[str, object]) -> None:
    with pytest.raises(FaultError):
        FaultPlan().add(spec, 0)


def test_counted_faults_are_spent_after_count_uses() -> None:
    plan = FaultPlan()
    gap = plan.add({"type": "trade_gap", "symbol": "btcusdt", "count": 2}, 0)
    plan.due(0)
    assert plan.skip_trade("ETHUSDT", 0) is None
    assert plan.skip_trade("BTCUSDT", 0) is gap
    assert plan.skip_trade("BTCUSDT", 0) is gap
    assert plan.skip_trade("BTCUSDT", 0) is None
    assert gap.hits == 2
    plan.due(0)
    assert plan.faults == []


def test_frame_faults_match_path_kind_and_stream() -> None:
    plan = FaultPlan()
    dup = plan.add({"type": "duplicate", "path": "/stream", "stream": "btcusdt@trade"}, 0)
    plan.due(0)
    assert plan.frame_faults("/stream?streams=btcusdt@trade", "stream", "btcusdt@trade", 0) == [dup]
    assert plan.frame_faults("/ws/btcusdt@trade", "stream", "btcusdt@trade", 0) == []
    assert plan.frame_faults("/stream?streams=x", "stream", "ethusdt@trade", 0) == []
    kinded = plan.add({"type": "delay", "ms": 5, "kind": "api"}, 0)
    plan.due(0)
    assert plan.frame_faults("/ws-api/v3", "api", "user", 0) == [kinded]
    assert 0.005 <= plan.jitter_s(kinded) <= 0.005


def test_rate_limit_scope_and_duration_default_to_retry_after() -> None:
    plan = FaultPlan()
    limit = plan.add({"type": "rate_limit", "status": 418, "retry_after": 3, "scope": "rest"}, 0)
    plan.due(0)
    assert limit.end_ns == 3 * S
    assert plan.rate_limited("ws_api", S) is None
    assert plan.rate_limited("rest", S) is limit
    assert plan.rate_limited("rest", 3 * S) is None


def test_order_fault_counts_down_and_action_faults_are_spent_on_firing() -> None:
    plan = FaultPlan()
    lost = plan.add({"type": "order_error", "mode": "lost"}, 0)
    drop = plan.add({"type": "drop"}, 0)
    assert plan.due(0) == [lost, drop]
    assert plan.order_fault("/ws-api/v3", 0) is lost
    assert plan.order_fault("/ws-api/v3", 0) is None
    plan.due(0)
    assert plan.faults == []


def test_reserved_keys_are_stripped_and_clear_removes_everything() -> None:
    plan = FaultPlan()
    fault = plan.add({"type": "stall", "id": 99, "ts": 1, "ev": "x"}, 0)
    assert "id" not in fault.spec and "ts" not in fault.spec and "ev" not in fault.spec
    assert plan.clear() == 1
    assert plan.faults == []


def test_fault_list_and_files(tmp_path: Path) -> None:
    assert fault_list({"type": "drop"}) == [{"type": "drop"}]
    assert fault_list({"faults": [{"type": "drop"}]}) == [{"type": "drop"}]
    with pytest.raises(FaultError):
        fault_list([1, 2])
    json_file = tmp_path / "plan.json"
    json_file.write_text('{"faults": [{"type": "stall", "at": 1, "duration": 2}]}')
    assert load_fault_file(json_file) == [{"type": "stall", "at": 1, "duration": 2}]
    yaml_file = tmp_path / "plan.yaml"
    yaml_file.write_text("- type: trade_gap\n  symbol: BTCUSDT\n  count: 3\n")
    assert load_fault_file(yaml_file) == [{"type": "trade_gap", "symbol": "BTCUSDT", "count": 3}]
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(FaultError):
        load_fault_file(bad)


FRAME = '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":7,"p":"1.5"}}'


def test_reformat_keeps_the_json_and_changes_the_layout() -> None:
    plan = FaultPlan()
    fault = plan.add({"type": "reformat"}, 0)
    assert fault.spec["style"] == "spaced" and fault.remaining is None  # until cleared
    spaced, pretty = restyle(FRAME, "spaced"), restyle(FRAME, "pretty")
    reordered = restyle(FRAME, "reordered")
    assert spaced.startswith('{"stream": "btcusdt@trade", "data": {')
    assert pretty.startswith('{\n  "stream": "btcusdt@trade",\n')
    assert reordered.startswith('{"data":{') and reordered.endswith('"stream":"btcusdt@trade"}')
    for text in (spaced, pretty, reordered):
        assert orjson.loads(text) == orjson.loads(FRAME)
    assert restyle("not json", "pretty") == "not json"


def test_oversized_pads_a_frame_just_past_the_limit_and_keeps_its_content() -> None:
    fault = FaultPlan().add({"type": "oversized"}, 0)
    assert fault.spec["bytes"] == OVERSIZED_BYTES == 4 * 1024 * 1024 + 1
    assert fault.remaining == 1
    big = padded(FRAME, 5000)
    assert len(big.encode()) == 5000
    body = orjson.loads(big)
    assert body["stream"] == "btcusdt@trade" and body["data"]["t"] == 7
    assert len(padded("[1,2]", 100).encode()) == 100
