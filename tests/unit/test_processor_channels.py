"""Frames of unknown channels are dead letters; a frame that cannot be normalised is counted.

And the processor tells frames apart by their decoded JSON: a venue or proxy that writes the same
frame with other whitespace gets the same outputs.
"""

from __future__ import annotations

import json

import orjson
import pytest

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import BadEntry, PartitionState, process_batch

RECV_NS = 1_723_161_255_000_000_000
Entries = list[tuple[str, RawFrame | BadEntry]]


def entries(frames: list[str], venue: str = "binance", kind: str = "ws") -> Entries:
    return [
        (f"1723161255000-{n}", RawFrame(kind, venue, "c1", n, RECV_NS, f))
        for n, f in enumerate(frames)
    ]


@pytest.mark.parametrize(
    "frame,reason",
    [
        ('{"stream":"btcusdt@forceOrder","data":{"e":"forceOrder","s":"BTCUSDT"}}',
         "unknown channel 'forceOrder' (stream btcusdt@forceOrder)"),
        ('{"e":"mysteryEvent","E":1,"s":"BTCUSDT"}', "unknown event type 'mysteryEvent'"),
        ('{"u":5,"s":"BTCUSDT"}', "unknown event type None"),
    ],
)  # fmt: skip
def test_a_frame_of_an_unknown_channel_is_a_dead_letter_with_the_reason(
    frame: str, reason: str
) -> None:
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, entries([frame]), 1)
    (letter,) = out.dead_letters
    assert letter.reason == reason and letter.data == frame
    assert state.counters["ignored"] == 0


def test_partial_depth_without_its_stream_is_counted_and_the_channels_are_normalised() -> None:
    frames = [
        '{"stream":"btcusdt@avgPrice","data":{"e":"avgPrice","E":1,"s":"BTCUSDT","i":"5m",'
        '"w":"1.5","T":1}}',
        '{"stream":"btcusdt@depth20@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}',
        '{"e":"avgPrice","E":1,"s":"BTCUSDT","i":"5m","w":"1.5","T":1}',
        '{"lastUpdateId":1,"bids":[],"asks":[]}',
    ]
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, entries(frames), 1)
    assert out.dead_letters == []
    c = state.counters
    assert (c["ignored"], c["ignored:partial_depth"]) == (1, 1)
    assert [t.channel for t in out.tickers] == ["avgPrice", "avgPrice"]
    assert [(d.depth, d.update_ms) for d in out.partial_depths] == [(20, 100)]


def test_alpaca_message_types_unknown_are_dead_letters_and_known_ones_counted() -> None:
    frame = (
        '[{"T":"l","S":"AAPL","u":1,"d":1,"i":"A","t":"2024-08-08T23:54:15Z","z":"C"},'
        '{"T":"zz","S":"AAPL"},'
        '{"T":"n","id":1,"headline":"x"}]'
    )
    state = PartitionState("alpaca:0", "alpaca")
    out = process_batch(state, entries([frame], venue="alpaca"), 1)
    (letter,) = out.dead_letters
    assert "message 1 (T='zz'): unknown message type T='zz'" in letter.reason
    assert (state.counters["ignored:lulds"], state.counters["ignored:news"]) == (1, 1)


def _spaced(frame: str) -> str:
    """The same JSON with a space after every separator and a newline at the end."""
    return json.dumps(json.loads(frame)) + "\n"


def test_whitespace_in_a_frame_changes_nothing() -> None:
    trade = {"e": "trade", "E": 1723161254900, "s": "BTCUSDT", "t": 7, "p": "100.5",
             "q": "0.1", "T": 1723161254900, "m": False, "M": True}  # fmt: skip
    depth = {"e": "depthUpdate", "E": 1723161254900, "s": "BTCUSDT", "U": 3, "u": 4,
             "b": [["1.5", "2"]], "a": []}  # fmt: skip
    quote = {"u": 5, "s": "BTCUSDT", "b": "1.5", "B": "2", "a": "1.6", "A": "3"}
    compact = [
        orjson.dumps({"stream": "btcusdt@trade", "data": trade}).decode(),
        orjson.dumps({"stream": "btcusdt@depth@100ms", "data": depth}).decode(),
        orjson.dumps({"stream": "btcusdt@bookTicker", "data": quote}).decode(),
        orjson.dumps({"result": None, "id": 1}).decode(),
    ]
    assert '{"stream":"' in compact[0] and '{"stream": "' in _spaced(compact[0])
    outs = []
    for frames in (compact, [_spaced(f) for f in compact]):
        state = PartitionState("binance:0", "binance")
        out = process_batch(state, entries(frames), 1)
        outs.append((out.trades, out.quotes, out.book_tops, out.snapshot_requests, out.dead_letters,
                     {k: v for k, v in state.counters.items() if v}))  # fmt: skip
    assert outs[0] == outs[1]
    assert len(outs[0][0]) == 1 and len(outs[0][1]) == 1 and outs[0][4] == []
