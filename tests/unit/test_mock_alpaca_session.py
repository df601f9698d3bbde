"""Unit tests for the Alpaca market-data session: connected -> auth -> subscribe, error codes."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from tickpipe.mock_ws.alpaca.session import FEEDS, ConnectionRegistry, DataSession, Feed, Reply

NS = 1_000_000_000
CREDENTIALS = {"key": "secret"}
AUTH = {"action": "auth", "key": "key", "secret": "secret"}


def session(
    path: str = "/v2/test",
    *,
    registry: ConnectionRegistry | None = None,
    conn_id: int = 1,
    feed: Feed | None = None,
    **kwargs: Any,
) -> DataSession:
    return DataSession(
        feed or FEEDS[path],
        conn_id,
        0,
        credentials=CREDENTIALS,
        registry=registry or ConnectionRegistry(),
        **kwargs,
    )


def send(s: DataSession, message: Any, now_ns: int = NS) -> Reply:
    return s.receive(orjson.dumps(message).decode(), now_ns)


def codes(reply: Reply) -> list[int]:
    return [m["code"] for m in reply.messages if m["T"] == "error"]


def authed(path: str = "/v2/test", **kwargs: Any) -> DataSession:
    s = session(path, **kwargs)
    s.opening()
    assert send(s, AUTH).messages == [{"T": "success", "msg": "authenticated"}]
    return s


def test_session_flow_matches_the_documented_example() -> None:
    s = session("/v2/iex")
    assert s.opening().messages == [{"T": "success", "msg": "connected"}]
    assert send(s, AUTH).messages == [{"T": "success", "msg": "authenticated"}]
    reply = send(
        s,
        {
            "action": "subscribe",
            "trades": ["FAKEPACA"],
            "quotes": ["FAKEPACA"],
            "bars": ["FAKEPACA"],
        },
    )
    assert reply.messages == [
        {
            "T": "subscription",
            "trades": ["FAKEPACA"],
            "quotes": ["FAKEPACA"],
            "bars": ["FAKEPACA"],
            "updatedBars": [],
            "dailyBars": [],
            "statuses": [],
            "lulds": [],
            "corrections": ["FAKEPACA"],
            "cancelErrors": ["FAKEPACA"],
        }
    ]
    assert reply.close_code is None
    assert s.wants("trades", "FAKEPACA") and s.wants("corrections", "FAKEPACA")
    assert not s.wants("statuses", "FAKEPACA")


def test_subscribe_adds_and_unsubscribe_subtracts() -> None:
    s = authed("/v2/iex")
    send(s, {"action": "subscribe", "trades": ["AAPL"]})
    reply = send(s, {"action": "subscribe", "trades": ["MSFT"], "quotes": ["AAPL"]})
    message = reply.messages[0]
    assert message["trades"] == ["AAPL", "MSFT"] and message["quotes"] == ["AAPL"]
    assert reply.added == {"trades": ["MSFT"], "quotes": ["AAPL"], "corrections": ["MSFT"],
                           "cancelErrors": ["MSFT"]}  # fmt: skip
    message = send(s, {"action": "unsubscribe", "trades": ["AAPL"]}).messages[0]
    assert message["trades"] == ["MSFT"]
    assert message["corrections"] == ["MSFT"] and message["cancelErrors"] == ["MSFT"]
    assert message["quotes"] == ["AAPL"]


def test_star_subscription_matches_every_symbol() -> None:
    s = authed("/v2/iex")
    send(s, {"action": "subscribe", "bars": ["*"]})
    assert s.wants("bars", "AAPL") and s.wants("bars", "ZZZ")
    assert not s.wants("trades", "AAPL")


def test_crypto_feed_channels_and_symbols() -> None:
    s = authed("/v1beta3/crypto/us")
    message = send(s, {"action": "subscribe", "orderbooks": ["BTC/USD"]}).messages[0]
    assert list(message) == ["T", "trades", "quotes", "orderbooks", "bars", "updatedBars",
                             "dailyBars"]  # fmt: skip
    assert codes(send(s, {"action": "subscribe", "trades": ["BTCUSD"]})) == [400]
    assert codes(send(s, {"action": "subscribe", "lulds": ["BTC/USD"]})) == [410]


def test_malformed_messages_are_invalid_syntax_and_keep_the_connection() -> None:
    s = authed("/v2/iex")
    for frame in ("{not json", "[1, 2]", '{"trades": ["AAPL"]}', '{"action": "dance"}'):
        reply = s.receive(frame, NS)
        assert codes(reply) == [400], frame
        assert reply.close_code is None
    assert codes(send(s, {"action": "subscribe", "trades": ["aapl"]})) == [400]
    assert codes(send(s, {"action": "subscribe", "trades": "AAPL"})) == [400]
    assert codes(send(s, {"action": "subscribe", "fancy": ["AAPL"]})) == [400]


def test_subscribe_before_auth_is_401() -> None:
    s = session()
    s.opening()
    reply = send(s, {"action": "subscribe", "trades": ["FAKEPACA"]})
    assert reply.messages == [{"T": "error", "code": 401, "msg": "not authenticated"}]
    assert reply.close_code is None


def test_bad_credentials_are_402_and_a_retry_can_succeed() -> None:
    s = session()
    s.opening()
    reply = send(s, {"action": "auth", "key": "key", "secret": "wrong"})
    assert reply.messages == [{"T": "error", "code": 402, "msg": "auth failed"}]
    assert reply.close_code is None and not s.authenticated
    assert codes(send(s, {"action": "auth", "key": "nobody", "secret": "secret"})) == [402]
    assert codes(send(s, {"action": "auth", "key": 5})) == [402]
    assert send(s, AUTH).messages[0]["msg"] == "authenticated"


def test_second_auth_is_403() -> None:
    s = authed()
    reply = send(s, AUTH)
    assert reply.messages == [{"T": "error", "code": 403, "msg": "already authenticated"}]
    assert reply.close_code is None


def test_auth_timeout_is_404_and_closes() -> None:
    s = session(auth_timeout_s=2.0)
    s.opening()
    assert s.tick(int(1.9 * NS)).messages == []
    reply = s.tick(2 * NS)
    assert reply.messages == [{"T": "error", "code": 404, "msg": "auth timeout"}]
    assert reply.close_code == 1008 and s.closed
    assert s.tick(3 * NS).messages == []  # said once


def test_late_auth_gets_404_instead_of_authenticated() -> None:
    s = session()
    s.opening()
    reply = send(s, AUTH, now_ns=11 * NS)
    assert codes(reply) == [404] and reply.close_code == 1008 and not s.authenticated


def test_authenticated_session_never_times_out() -> None:
    s = authed()
    assert s.tick(60 * NS).messages == []


def test_symbol_limit_is_405_and_leaves_the_set_unchanged() -> None:
    feed = Feed("/v2/iex", "stocks", FEEDS["/v2/iex"].channels, symbol_limit=2)
    s = authed(feed=feed)
    send(s, {"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT"]})
    reply = send(s, {"action": "subscribe", "quotes": ["TSLA"]})
    assert reply.messages == [{"T": "error", "code": 405, "msg": "symbol limit exceeded"}]
    assert s.subscriptions["quotes"] == {"MSFT"}
    assert send(s, {"action": "subscribe", "bars": ["TSLA", "NVDA"]}).messages[0]["bars"] == [
        "NVDA",
        "TSLA",
    ]  # bars do not count


def test_second_connection_for_the_same_key_and_endpoint_is_406() -> None:
    registry = ConnectionRegistry()
    first = authed(registry=registry, conn_id=1)
    second = session(registry=registry, conn_id=2)
    second.opening()
    reply = send(second, AUTH)
    assert reply.messages == [{"T": "error", "code": 406, "msg": "connection limit exceeded"}]
    assert reply.close_code == 1008
    other_feed = authed("/v2/iex", registry=registry, conn_id=3)
    assert other_feed.authenticated
    first.close()
    again = authed(registry=registry, conn_id=4)
    assert again.authenticated and registry.count("/v2/test", "key") == 1


def test_slow_client_is_407_and_closes() -> None:
    s = authed()
    reply = s.slow_client()
    assert reply.messages == [{"T": "error", "code": 407, "msg": "slow client"}]
    assert reply.close_code == 1008 and s.closed


def test_feed_outside_the_plan_is_409_at_auth() -> None:
    s = session("/v2/sip", entitled=False)
    s.opening()
    reply = send(s, AUTH)
    assert reply.messages == [{"T": "error", "code": 409, "msg": "insufficient subscription"}]
    assert reply.close_code == 1008


def test_channel_not_offered_on_the_feed_is_410() -> None:
    s = authed("/v2/iex")
    reply = send(s, {"action": "subscribe", "orderbooks": ["AAPL"]})
    assert reply.messages == [
        {"T": "error", "code": 410, "msg": "invalid subscribe action for this feed"}
    ]


def test_msgpack_client_frames_are_accepted() -> None:
    s = session()
    s.opening()
    assert s.receive(msgpack.packb(AUTH), NS).messages[0]["msg"] == "authenticated"
    reply = s.receive(msgpack.packb({"action": "subscribe", "quotes": ["FAKEPACA"]}), NS)
    assert reply.messages[0]["quotes"] == ["FAKEPACA"]


def test_header_auth_authenticates_at_once() -> None:
    s = session(header_key="key", header_secret="secret")
    assert s.opening().messages == [
        {"T": "success", "msg": "connected"},
        {"T": "success", "msg": "authenticated"},
    ]
    bad = session(header_key="key", header_secret="nope", registry=ConnectionRegistry())
    reply = bad.opening()
    assert codes(reply) == [402] and reply.close_code == 1008
