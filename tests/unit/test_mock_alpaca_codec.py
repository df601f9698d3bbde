"""Unit tests for Alpaca frame encoding: JSON text vs msgpack binary with Timestamp ext -1."""

from __future__ import annotations

import datetime as dt

import msgpack
import orjson
import pytest

from tickpipe.mock_ws.alpaca.codec import (
    Ts,
    decode_client,
    encode_data_frame,
    encode_trading_frame,
    parse_rfc3339,
    rfc3339,
)

# 2021-02-22T15:51:45.335689322Z, the docs' nanosecond example.
NS = 1_614_009_105_335_689_322


def test_rfc3339_keeps_nanoseconds_and_drops_trailing_zeros() -> None:
    assert rfc3339(NS) == "2021-02-22T15:51:45.335689322Z"
    assert rfc3339(1_614_009_105_100_000_000) == "2021-02-22T15:51:45.1Z"
    assert rfc3339(1_614_009_300 * 1_000_000_000) == "2021-02-22T15:55:00Z"


def test_parse_rfc3339_round_trips_and_reads_dates_and_offsets() -> None:
    assert parse_rfc3339("2021-02-22T15:51:45.335689322Z") == NS
    assert parse_rfc3339("2021-02-22T10:51:45.335689322-05:00") == NS
    assert parse_rfc3339("2021-02-22") == 1_613_952_000 * 1_000_000_000
    for bad in ("yesterday", "2021-02-22T15:51:45", "2021-02-22T15:51:45.1234567891Z"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_json_frame_is_text_with_string_times() -> None:
    frame = encode_data_frame(
        [{"T": "t", "S": "AAPL", "p": 126.55, "t": Ts(NS)}], use_msgpack=False
    )
    assert isinstance(frame, str)
    assert orjson.loads(frame) == [
        {"T": "t", "S": "AAPL", "p": 126.55, "t": "2021-02-22T15:51:45.335689322Z"}
    ]


def test_msgpack_frame_is_binary_with_timestamp_extension() -> None:
    frame = encode_data_frame([{"T": "q", "S": "FAKEPACA", "t": Ts(NS)}], use_msgpack=True)
    assert isinstance(frame, bytes)
    # Timestamp 64: fixext 8 (0xd7) of extension type -1 (0xff).
    assert b"\xd7\xff" in frame
    decoded = msgpack.unpackb(frame)
    stamp = decoded[0]["t"]
    assert isinstance(stamp, msgpack.Timestamp)
    assert stamp.to_unix_nano() == NS
    assert stamp.to_datetime() == dt.datetime(2021, 2, 22, 15, 51, 45, 335689, tzinfo=dt.UTC)
    whole = msgpack.unpackb(
        encode_data_frame([{"t": Ts(1_614_009_300_000_000_000)}], use_msgpack=True)
    )
    assert whole[0]["t"].to_unix_nano() == 1_614_009_300_000_000_000


def test_trading_frames_are_binary() -> None:
    message = {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    assert orjson.loads(encode_trading_frame(message, use_msgpack=False)) == message
    assert msgpack.unpackb(encode_trading_frame(message, use_msgpack=True)) == message


def test_decode_client_reads_json_text_msgpack_and_json_bytes() -> None:
    auth = {"action": "auth", "key": "k", "secret": "s"}
    assert decode_client(orjson.dumps(auth).decode()) == auth
    assert decode_client(msgpack.packb(auth)) == auth
    assert decode_client(orjson.dumps(auth)) == auth
    with pytest.raises(ValueError):
        decode_client("{oops")
    with pytest.raises(ValueError):
        decode_client(b"\xc1\xc1\xc1")
