"""Normalised events round-trip through their readable stream encoding."""

from __future__ import annotations

import pytest

from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import SCHEMA_VERSION, Bar, OrderIntent, RawFrame, Signal, Trade


def test_trade_fields_are_readable_and_round_trip_from_bytes() -> None:
    t = Trade("binance", "BTCUSDT", "42", "61837.63000000", "0.02000000", "sell", 10, 20)
    fields = t.to_fields()
    assert fields["price"] == "61837.63000000" and fields["v"] == SCHEMA_VERSION
    as_bytes = {k.encode(): v.encode() for k, v in fields.items()}
    assert Trade.from_fields(as_bytes) == t


def test_optional_and_bool_fields() -> None:
    i = OrderIntent("tp-1", "sig", "binance", "BTCUSDT", "buy", "MARKET", "1", None, 1, 2)
    assert i.to_fields()["price"] == ""
    assert OrderIntent.from_fields(i.to_fields()) == i
    b = Bar("binance", "X", "1s", 0, "1", "2", "0.5", "1.5", "3", 2, "1", "2", True)
    assert b.to_fields()["final"] == "1"
    assert Bar.from_fields(b.to_fields()).final is True


def test_missing_or_bad_fields_raise_decode_error() -> None:
    fields = Signal(
        "s", "binance", "X", "th", "place", "buy", "1", "2", "r", "c", 1, 2, 3
    ).to_fields()
    del fields["symbol"]
    with pytest.raises(DecodeError, match="symbol"):
        Signal.from_fields(fields)
    fields = Trade("binance", "X", "1", "1", "1", "buy", 1, 2).to_fields()
    fields["ts_event"] = "soon"
    with pytest.raises(DecodeError):
        Trade.from_fields(fields)
    with pytest.raises(DecodeError):
        RawFrame.from_fields({b"kind": b"ws"})


def test_raw_frame_round_trip() -> None:
    r = RawFrame("ws", "binance", "c1", 7, 123, '{"a":1}', "market")
    assert RawFrame.from_fields(r.to_fields()) == r
