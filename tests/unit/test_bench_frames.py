"""The benchmark's pre-encoded frames: valid Binance trades and valid WebSocket framing."""

from __future__ import annotations

import struct

import orjson

from bench.frames import raw_entries, trade_frames, ws_text_frame
from tickpipe.common.schema import RawFrame
from tickpipe.venues.binance import wire as binance


def test_trade_frames_parse_as_binance_trades_with_rising_ids() -> None:
    frames = trade_frames(("BTCUSDT", "ETHUSDT"), 6, start_ms=1_700_000_000_000)
    ids: dict[str, list[int]] = {}
    for text in frames:
        stream, payload = binance.unwrap(text)
        trade = binance.parse_trade(payload, ts_recv=0)
        assert stream == f"{trade.symbol.lower()}@trade"
        ids.setdefault(trade.symbol, []).append(int(trade.trade_id))
    assert ids == {"BTCUSDT": [1, 2, 3], "ETHUSDT": [1, 2, 3]}


def test_trade_frames_continue_from_first_id() -> None:
    frames = trade_frames(("BTCUSDT",), 2, start_ms=0, first_id=41)
    assert [orjson.loads(f)["data"]["t"] for f in frames] == [41, 42]


def _decode(frame: bytes) -> tuple[int, bytes]:
    first, second = frame[0], frame[1]
    size, offset = second & 0x7F, 2
    if size == 126:
        (size,), offset = struct.unpack("!H", frame[2:4]), 4
    elif size == 127:
        (size,), offset = struct.unpack("!Q", frame[2:10]), 10
    assert second & 0x80 == 0  # server frames are not masked
    return first, frame[offset : offset + size]


def test_ws_text_frame_lengths() -> None:
    for size in (0, 125, 126, 65535, 65536):
        text = "x" * size
        first, payload = _decode(ws_text_frame(text))
        assert first == 0x81  # FIN + text
        assert payload == text.encode()


def test_raw_entries_round_trip_as_raw_frames() -> None:
    frames = trade_frames(("BTCUSDT",), 2, start_ms=0)
    entries = raw_entries(frames, conn="c1", ts_recv=100)
    decoded = [RawFrame.from_fields(e) for e in entries]
    assert [(f.kind, f.conn, f.seq, f.ts_recv) for f in decoded] == [
        ("ws", "c1", 1, 101),
        ("ws", "c1", 2, 102),
    ]
    assert decoded[1].data == frames[1]


def test_agg_trade_frames_carry_the_same_trades_as_aggregate_trades() -> None:
    plain = trade_frames(("BTCUSDT", "ETHUSDT"), 4, start_ms=1_700_000_000_000)
    agg = trade_frames(("BTCUSDT", "ETHUSDT"), 4, start_ms=1_700_000_000_000, event="aggTrade")
    for p_text, a_text in zip(plain, agg, strict=True):
        p, a = orjson.loads(p_text), orjson.loads(a_text)
        assert a["stream"] == p["stream"].replace("@trade", "@aggTrade")
        pd, ad = p["data"], a["data"]
        assert ad["e"] == "aggTrade"
        assert ad["a"] == ad["f"] == ad["l"] == pd["t"]
        assert {k: ad[k] for k in "sEpqTmM"} == {k: pd[k] for k in "sEpqTmM"}
