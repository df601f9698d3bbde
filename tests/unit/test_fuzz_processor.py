"""Fuzz the processor's core with damaged real frames: it never raises and loses nothing.

Every entry of a batch is acknowledged; whatever is not a sound trade (or a frame passed over and
counted) lands in the dead letters with a reason; every trade that comes out is sound.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fuzz_frames import (
    BAD_NUMBERS,
    damaged_frames,
    execution_report,
    fuzz_settings,
    real_frames,
)
from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import BadEntry, PartitionState, process_batch
from tickpipe.processor.lanes import decode_entries
from tickpipe.processor.private import VenueState, process_private_batch
from tickpipe.processor.strategies import ThresholdCross

FUZZ = fuzz_settings(150)
TS_NOW = 1_800_000_000_000_000_000
#: When the capture's first frames were received (their trade times lie within seconds of it).
RECV_NS = 1_723_161_256_000_000_000


def _state() -> PartitionState:
    strategy = ThresholdCross({"BTCUSDT": "61835"}, hysteresis_bps="1", order_qty="0.001")
    return PartitionState("binance:0", "binance", [strategy])


def _entries(frames: list[str | bytes]) -> list[tuple[str, RawFrame | BadEntry]]:
    out: list[tuple[str, RawFrame | BadEntry]] = []
    for seq, frame in enumerate(frames):
        data = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
        out.append((f"1723161254000-{seq}", RawFrame("ws", "binance", "c1", seq, RECV_NS, data)))
    return out


def _sound(value: str, *, positive: bool) -> bool:
    number = Decimal(value)
    return number.is_finite() and (number > 0 if positive else number >= 0)


@FUZZ
@given(
    st.lists(
        st.one_of(damaged_frames(), st.sampled_from(real_frames()[:400])), min_size=1, max_size=25
    )
)
def test_process_batch_never_raises_and_accounts_for_every_entry(frames: list[str | bytes]) -> None:
    entries = _entries(frames)
    state = _state()
    out = process_batch(state, entries, TS_NOW)
    ids = [entry_id for entry_id, _ in entries]
    assert out.acked == ids
    assert state.counters["frames"] == len(entries)
    for letter in out.dead_letters:
        assert letter.reason and letter.entry_id in ids
    for trade in out.trades:
        assert _sound(trade.price, positive=True) and _sound(trade.qty, positive=True)
        assert int(trade.trade_id) >= 0 and trade.symbol == "BTCUSDT"
    # The state still round-trips through its checkpoint.
    PartitionState.from_bytes(state.to_bytes(), "binance:0", "binance", _state().strategies)


@FUZZ
@given(st.sampled_from(["p", "q"]), st.sampled_from(BAD_NUMBERS))
def test_a_trade_with_a_bad_number_is_a_dead_letter_with_a_reason(field: str, bad: Any) -> None:
    good = [f for f in real_frames() if '@trade"' in f][:3]
    broken = orjson.loads(good[1])
    broken["data"][field] = bad
    out = process_batch(_state(), _entries([good[0], orjson.dumps(broken).decode(), good[2]]), 1)
    assert [d.entry_id for d in out.dead_letters] == ["1723161254000-1"]
    assert any(w in out.dead_letters[0].reason for w in ("price", "quantity", "invalid"))
    assert len(out.trades) == 2


@FUZZ
@given(
    st.dictionaries(
        st.binary(max_size=12) | st.sampled_from([b"kind", b"venue", b"data", b"seq", b"conn"]),
        st.binary(max_size=40),
        max_size=8,
    )
)
def test_any_stream_entry_decodes_into_a_frame_or_a_bad_entry(fields: dict[bytes, bytes]) -> None:
    [(entry_id, decoded)] = decode_entries([(b"1-1", fields)])
    assert entry_id == "1-1"
    out = process_batch(_state(), [(entry_id, decoded)], TS_NOW)
    assert out.acked == ["1-1"]
    if isinstance(decoded, BadEntry):
        assert [d.reason for d in out.dead_letters] == [decoded.reason]


@FUZZ
@given(
    st.sampled_from(sorted(execution_report())),
    st.sampled_from([None, True, -1, 10**40, "x", "", [], {}, "NaN"]),
)
def test_private_lane_turns_a_damaged_execution_report_into_a_dead_letter(
    key: str, value: Any
) -> None:
    data = dict(execution_report())
    if value is None:
        del data[key]
    else:
        data[key] = value
    body = json.dumps({"subscriptionId": 0, "event": data})  # big integers too
    frame = RawFrame("ws", "binance", "priv", 1, 1, body)
    out = process_private_batch(VenueState("binance"), [("5-0", frame)], TS_NOW)
    assert out.acked == ["5-0"]
    assert len(out.order_updates) + len(out.dead_letters) <= 1
    for letter in out.dead_letters:
        assert letter.reason
