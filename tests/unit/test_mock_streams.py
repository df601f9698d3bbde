"""Unit tests of the mock exchange's market-stream control messages and frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.realdata import first_frames
from tickpipe.mock_ws.binance.streams import (
    StreamSession,
    frame,
    is_valid_stream,
    streams_from_path,
)
from tickpipe.mock_ws.market import SimTrade
from tickpipe.venues.binance.wire import parse_trade, unwrap

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def ask(session: StreamSession, message: Any) -> Any:
    text = message if isinstance(message, str) else orjson.dumps(message).decode()
    return session.handle(text)


def test_subscribe_list_unsubscribe() -> None:
    s = StreamSession(SYMBOLS, combined=False)
    sub = {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@depth@100ms"], "id": 1}
    assert ask(s, sub) == {"result": None, "id": 1}
    assert ask(s, {"method": "LIST_SUBSCRIPTIONS", "id": "a-2"}) == {
        "result": ["btcusdt@trade", "ethusdt@depth@100ms"],
        "id": "a-2",
    }
    unsub = {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 312}
    assert ask(s, unsub) == {"result": None, "id": 312}
    assert s.streams == ["ethusdt@depth@100ms"]
    assert ask(s, {"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": None}) == {
        "result": None,
        "id": None,
    }
    assert s.streams == ["ethusdt@depth@100ms"]


def test_combined_property() -> None:
    raw = StreamSession(SYMBOLS, combined=False)
    get = {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}
    assert ask(raw, get) == {"result": False, "id": 2}
    assert ask(raw, {"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {
        "result": None,
        "id": 5,
    }
    assert ask(raw, get) == {"result": True, "id": 2}
    assert ask(StreamSession(SYMBOLS, combined=True), get)["result"] is True


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", 3),
        ({"method": "SUBSCRIBE", "params": ["dogeusdt@trade"], "id": 1}, 2),
        ({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 1}, 2),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 1}, 2),
        ({"method": "SUBSCRIBE", "params": [7], "id": 1}, 2),
        ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 1}, 2),
        ({"method": "FOO", "id": 1}, 2),
        ({"params": [], "id": 1}, 2),
        ({"method": "LIST_SUBSCRIPTIONS", "id": {"x": 1}}, 2),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 1}, 1),
        ({"method": "SET_PROPERTY", "params": ["colour", True], "id": 1}, 0),
        ({"method": "GET_PROPERTY", "params": [3], "id": 1}, 2),
        ([1, 2], 2),
    ],
)
def test_errors_use_the_nested_form(message: Any, code: int) -> None:
    s = StreamSession(SYMBOLS, combined=False)
    answer = ask(s, message)
    assert set(answer) == {"error", "id"}
    assert answer["error"]["code"] == code
    assert isinstance(answer["error"]["msg"], str) and answer["error"]["msg"]
    assert s.streams == []


def test_invalid_stream_wording_and_request_id() -> None:
    s = StreamSession(SYMBOLS, combined=False)
    answer = ask(s, {"method": "SUBSCRIBE", "params": ["dogeusdt@trade"], "id": 9})
    assert answer == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 9}
    unknown = ask(s, {"method": "SUBSCRIBE_ALL", "id": 4})["error"]["msg"]
    assert unknown.startswith("Invalid request: unknown variant `SUBSCRIBE_ALL`")


def test_valid_stream_names() -> None:
    for name in (
        "btcusdt@trade",
        "btcusdt@aggTrade",
        "btcusdt@bookTicker",
        "btcusdt@depth",
        "btcusdt@depth@100ms",
        "btcusdt@depth20@100ms",
        "btcusdt@kline_1m",
        "btcusdt@ticker_1h",
        "!miniTicker@arr",
    ):
        assert is_valid_stream(name, SYMBOLS), name
    for name in ("btcusdt", "btcusdt@kline_7m", "solusdt@trade", "BTCUSDT@trade", "@trade"):
        assert not is_valid_stream(name, SYMBOLS), name


def test_streams_from_path() -> None:
    assert streams_from_path("0") == []
    assert streams_from_path("") == []
    assert streams_from_path("btcusdt@trade") == ["btcusdt@trade"]
    assert streams_from_path("btcusdt@trade/ethusdt@trade") == ["btcusdt@trade", "ethusdt@trade"]


def test_frames_have_the_shape_of_a_real_binance_frame() -> None:
    real = orjson.loads(first_frames(1, "@trade")[0])
    trade = SimTrade("BTCUSDT", 5, "61837.63000000", "0.02000000", 1723161255342, True)
    combined = frame("btcusdt@trade", trade.payload(1723161255343), combined=True)
    ours = orjson.loads(combined)
    assert set(ours) == set(real) and set(ours["data"]) == set(real["data"])
    assert {k: type(v) for k, v in ours["data"].items()} == {
        k: type(v) for k, v in real["data"].items()
    }
    stream, payload = unwrap(combined)
    assert stream == "btcusdt@trade"
    assert parse_trade(payload, ts_recv=0).price == "61837.63000000"
    raw = frame("btcusdt@trade", trade.payload(), combined=False)
    assert unwrap(raw) == (None, trade.payload())
