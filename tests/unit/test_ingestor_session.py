"""Unit tests of the ingestor's pure session core (no sockets, no Redis, no sleeps)."""

from __future__ import annotations

import hashlib
import hmac
import json

import orjson
import pytest

from tests.realdata import first_frames
from tickpipe.common.errors import AuthError, ConfigError, RateLimited, VenueError
from tickpipe.common.links import ConnectionTape, connection_id, retry_after_from_header, run_token
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Secret, Settings
from tickpipe.venues.binance.session import (
    MAX_URL_CHARS,
    SUBSCRIBE_CHUNK,
    classify_reply,
    is_data_frame,
    market_plan,
    market_streams,
    plan_links,
    subscribe_message,
    user_data_subscribe_request,
)

NOW_MS = 1_700_000_000_000


# -- streams, URL, SUBSCRIBE -------------------------------------------------------------------


def test_market_streams_are_lower_case_trade_streams_without_repeats() -> None:
    assert market_streams(["BTCUSDT", "EthUsdt", "BTCUSDT"]) == ["btcusdt@trade", "ethusdt@trade"]


def test_market_plan_puts_streams_in_the_combined_url() -> None:
    plan = market_plan("ws://127.0.0.1:9443/", ["BTCUSDT", "ETHUSDT"])
    assert plan.url == "ws://127.0.0.1:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert plan.messages == ()
    assert plan.streams == ("btcusdt@trade", "ethusdt@trade")


def test_market_plan_subscribes_by_message_when_the_url_would_be_too_long() -> None:
    symbols = [f"SYM{n:04d}USDT" for n in range(450)]
    plan = market_plan("wss://stream.binance.com:9443", symbols, first_request_id=7)
    assert plan.url == "wss://stream.binance.com:9443/stream"
    decoded = [json.loads(m) for m in plan.messages]
    assert [m["id"] for m in decoded] == [7, 8, 9]
    assert all(m["method"] == "SUBSCRIBE" for m in decoded)
    assert all(len(m["params"]) <= SUBSCRIBE_CHUNK for m in decoded)
    assert [p for m in decoded for p in m["params"]] == market_streams(symbols)
    assert len("/".join(market_streams(symbols))) > MAX_URL_CHARS


def test_subscribe_message_has_binance_shape() -> None:
    msg = json.loads(subscribe_message(["btcusdt@trade"], 3))
    assert msg == {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}


# -- user-data subscription ---------------------------------------------------------------------


def test_user_data_request_is_signed_over_sorted_params() -> None:
    text = user_data_subscribe_request(
        "key-123", "secret-xyz", timestamp_ms=1_649_729_878_532, request_id=4
    )
    request = json.loads(text)
    assert request["id"] == 4
    assert request["method"] == "userDataStream.subscribe.signature"
    params = request["params"]
    assert params["apiKey"] == "key-123"
    assert params["timestamp"] == 1_649_729_878_532
    payload = b"apiKey=key-123&timestamp=1649729878532"
    expected = hmac.new(b"secret-xyz", payload, hashlib.sha256).hexdigest()
    assert params["signature"] == expected
    assert "secret-xyz" not in text


# -- replies ------------------------------------------------------------------------------------


def test_real_binance_frames_are_data_not_replies() -> None:
    frames = first_frames(300)
    streamed = [f for f in frames if f.startswith('{"stream"')]
    assert len(streamed) > 200
    assert all(is_data_frame(f) for f in streamed)
    assert all(is_data_frame(f.encode()) for f in streamed)
    # Every frame of the capture, the REST snapshot line included, is not a reply.
    assert [classify_reply(f, now_ms=NOW_MS) for f in frames] == [None] * len(frames)


def test_data_frames_are_told_from_replies_whatever_their_whitespace() -> None:
    spaced = [json.dumps(json.loads(f)) for f in first_frames(300) if f.startswith('{"stream"')]
    assert len(spaced) > 200 and spaced[0].startswith('{"stream": "')
    assert all(is_data_frame(f) for f in spaced)
    assert all(is_data_frame(json.dumps(json.loads(f), indent=2).encode()) for f in spaced[:20])
    event = {"subscriptionId": 0, "event": {"e": "balanceUpdate", "E": 1}}
    assert is_data_frame(json.dumps(event)) and is_data_frame(json.dumps(event, indent=1))
    for reply in ('{ "result": null, "id": 3 }', '{"id": 3, "status": 200, "result": {}}', "[]"):
        assert not is_data_frame(reply)
        assert not is_data_frame(reply.encode())


def test_user_data_events_are_data_frames() -> None:
    event = '{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1,"u":1,"B":[]}}'
    assert is_data_frame(event)
    assert classify_reply(event, now_ms=NOW_MS) is None


@pytest.mark.parametrize("frame", ["not json", "[1,2]", '{"e":"serverShutdown","E":1}', ""])
def test_frames_that_are_not_replies_classify_as_none(frame: str) -> None:
    assert classify_reply(frame, now_ms=NOW_MS) is None


def test_subscribe_success_reply() -> None:
    reply = classify_reply('{"result":null,"id":1}', now_ms=NOW_MS)
    assert reply is not None and reply.ok and reply.id == 1 and reply.status is None


def test_stream_error_reply_is_a_venue_error() -> None:
    reply = classify_reply(
        '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":1}', now_ms=NOW_MS
    )
    assert reply is not None and not reply.ok
    assert type(reply.error) is VenueError
    assert reply.error.code == 2
    assert "invalid stream" in str(reply.error)


def test_ws_api_success_reply_carries_the_result() -> None:
    reply = classify_reply('{"id":"a1","status":200,"result":{"subscriptionId":0}}', now_ms=NOW_MS)
    assert reply is not None and reply.ok
    assert reply.status == 200 and reply.result == {"subscriptionId": 0}


@pytest.mark.parametrize(
    ("status", "code"), [(401, -2015), (400, -1022), (401, -2014), (401, None)]
)
def test_bad_key_is_an_auth_error_naming_the_settings(status: int, code: int | None) -> None:
    error = {"msg": "Invalid API-key, IP, or permissions for action."}
    if code is not None:
        error["code"] = code  # type: ignore[assignment]
    frame = orjson.dumps({"id": 9, "status": status, "error": error})
    reply = classify_reply(frame, now_ms=NOW_MS)
    assert reply is not None
    assert isinstance(reply.error, AuthError)
    assert "BINANCE_API_KEY" in str(reply.error) and "BINANCE_API_SECRET" in str(reply.error)
    assert reply.error.status == status and reply.error.code == code


def test_key_revoked_mid_session_is_an_auth_error() -> None:
    frame = (
        '{"id":null,"status":401,"error":{"code":-2015,'
        '"msg":"Invalid API-key, IP, or permissions for action."}}'
    )
    reply = classify_reply(frame, now_ms=NOW_MS)
    assert reply is not None and reply.id is None and isinstance(reply.error, AuthError)


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_waits_until_retry_after(status: int) -> None:
    frame = orjson.dumps(
        {
            "id": "fc93a61a",
            "status": status,
            "error": {
                "code": -1003,
                "msg": "Way too much request weight used",
                "data": {"serverTime": NOW_MS, "retryAfter": NOW_MS + 2500},
            },
        }
    )
    reply = classify_reply(frame, now_ms=NOW_MS)
    assert reply is not None and isinstance(reply.error, RateLimited)
    assert reply.error.retry_after_s == pytest.approx(2.5)
    assert reply.error.status == status


def test_rate_limit_in_the_past_or_missing_waits_zero() -> None:
    late = orjson.dumps(
        {"id": 1, "status": 429, "error": {"code": -1003, "msg": "x", "data": {"retryAfter": 1}}}
    )
    bare = orjson.dumps({"id": 1, "status": 429, "error": {"code": -1003, "msg": "x"}})
    for frame in (late, bare):
        reply = classify_reply(frame, now_ms=NOW_MS)
        assert reply is not None and isinstance(reply.error, RateLimited)
        assert reply.error.retry_after_s == 0.0


def test_other_ws_api_errors_are_plain_venue_errors() -> None:
    frame = '{"id":2,"status":400,"error":{"code":-1021,"msg":"Timestamp outside recvWindow."}}'
    reply = classify_reply(frame, now_ms=NOW_MS)
    assert reply is not None and type(reply.error) is VenueError
    assert reply.error.code == -1021 and reply.error.status == 400


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), (" 1.5 ", 1.5), (None, None), ("soon", None), ("-1", None)],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_from_header(header) == seconds


# -- connection ids, sequence numbers, markers --------------------------------------------------


def test_connection_ids_differ_per_attempt_and_per_run() -> None:
    token_a, token_b = run_token(1_723_161_253_937_085_768), run_token(1_723_161_253_938_085_768)
    assert token_a != token_b
    ids = {connection_id("binance:0", t, n) for t in (token_a, token_b) for n in (1, 2)}
    assert len(ids) == 4
    assert connection_id("binance:0", "abc", 3) == "binance:0/abc.3"
    assert run_token(0) == "0"


def test_tape_numbers_frames_from_one_and_keeps_them_as_received() -> None:
    tape = ConnectionTape("binance:0/x.1", "binance", "market", "ws://h/stream?streams=a")
    frames = first_frames(5)
    stamped = [tape.frame(f, 100 + n) for n, f in enumerate(frames)]
    assert [f.seq for f in stamped] == [1, 2, 3, 4, 5]
    assert [f.data for f in stamped] == frames
    assert all(f.kind == "ws" and f.conn == "binance:0/x.1" for f in stamped)
    assert all(f.channel == "market" for f in stamped)
    assert stamped[2].ts_recv == 102
    # The encoding round-trips through the stream fields.
    assert RawFrame.from_fields(stamped[0].to_fields()) == stamped[0]


def test_tape_keeps_binary_frames() -> None:
    tape = ConnectionTape("c", "binance", "market", "ws://h")
    assert tape.frame(b'{"a":1}', 1).data == '{"a":1}'
    odd = tape.frame(b"\xff\x00", 2)
    assert odd.kind == "ws-binary" and odd.data == "/wA=" and odd.seq == 2


def test_markers_record_connect_and_disconnect_with_frame_count() -> None:
    tape = ConnectionTape("binance:0/x.2", "binance", "market", "ws://h/stream")
    connect = tape.connect_marker(10)
    assert connect.kind == "marker" and connect.seq == 0 and connect.ts_recv == 10
    assert json.loads(connect.data) == {
        "event": "connect",
        "conn": "binance:0/x.2",
        "url": "ws://h/stream",
    }
    tape.frame("{}", 11)
    tape.frame("{}", 12)
    gone = tape.disconnect_marker(13, "closed by the venue: code 1000")
    assert gone.kind == "marker" and gone.seq == 2
    assert json.loads(gone.data) == {
        "event": "disconnect",
        "conn": "binance:0/x.2",
        "reason": "closed by the venue: code 1000",
        "frames": 2,
    }


# -- connection plan ----------------------------------------------------------------------------


def test_plan_links_one_market_link_per_partition_and_no_private_without_key() -> None:
    settings = Settings(namespace="u", symbols=("BTCUSDT", "ETHUSDT"), shards=2)
    links = plan_links(settings)
    assert [link.label for link in links] == ["binance:0", "binance:1"]
    assert [link.stream for link in links] == ["u:{binance:0}:raw", "u:{binance:1}:raw"]
    assert links[0].url.endswith("/stream?streams=ethusdt@trade")
    assert links[1].url.endswith("/stream?streams=btcusdt@trade")
    assert not any(link.private for link in links)
    assert {link.channel for link in links} == {"market"}


def test_plan_links_adds_the_private_link_when_a_key_is_set() -> None:
    settings = Settings(
        namespace="u",
        binance_api_key=Secret("k"),
        binance_api_secret=Secret("s"),
        binance_ws_api_url="ws://h:1/ws-api/v3",
    )
    private = plan_links(settings)[-1]
    assert private.private and private.channel == "private"
    assert private.url == "ws://h:1/ws-api/v3"
    assert private.stream == "u:{binance}:private-raw"


def test_plan_links_rejects_a_key_without_its_secret() -> None:
    with pytest.raises(ConfigError, match="BINANCE_API_SECRET"):
        plan_links(Settings(binance_api_key=Secret("k")))
