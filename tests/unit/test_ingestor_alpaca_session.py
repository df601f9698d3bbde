"""Unit tests of the ingestor's Alpaca session core: handshake, error codes, routing, encoding."""

from __future__ import annotations

import base64

import msgpack
import orjson
import pytest

from tickpipe.common.errors import AuthError, ConfigError, DecodeError, RateLimited, VenueError
from tickpipe.common.links import ConnectionTape
from tickpipe.common.names import Partition
from tickpipe.common.settings import Secret, Settings
from tickpipe.ingestor.adapter_control import AdapterControl
from tickpipe.ingestor.subscriptions import parse_control, parse_symbols
from tickpipe.venues.alpaca.session import (
    CRYPTO_CHANNELS,
    STOCK_CHANNELS,
    DataSession,
    Fail,
    Ready,
    Refused,
    Send,
    SendAuth,
    TradingSession,
    auth_message,
    channels_for,
    decode_frame,
    element_spans,
    encode_client,
    route_frame,
    subscription_message,
    upgrade_headers,
)
from tickpipe.venues.alpaca.session import check_keys as check_alpaca_keys
from tickpipe.venues.alpaca.session import plan_links as alpaca_links

FIRST = Partition("alpaca", 0)
CONNECTED = [{"T": "success", "msg": "connected"}]
AUTHENTICATED = [{"T": "success", "msg": "authenticated"}]
SUBSCRIPTION = [{"T": "subscription", "trades": ["AAPL"], "quotes": ["AAPL"], "bars": []}]
# Frames as protocols.md §3.3 shows them (the venue's documented examples).
TRADE_AAPL = '{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"}'  # noqa: E501
QUOTE_FAKE = '{"T":"q","S":"FAKEPACA","bx":"O","bp":133.85,"bs":4,"ax":"R","ap":135.77,"as":5,"c":["R"],"z":"A","t":"2024-07-24T07:56:53.639713735Z"}'  # noqa: E501
BAR_SPY = '{"T":"u","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z"}'  # noqa: E501


def error(code: int, msg: str) -> list[dict[str, object]]:
    return [{"T": "error", "code": code, "msg": msg}]


def streaming() -> DataSession:
    session = DataSession(["AAPL"], STOCK_CHANNELS)
    session.receive(CONNECTED)
    session.receive(AUTHENTICATED)
    session.receive(SUBSCRIPTION)
    return session


def test_handshake_connected_auth_subscribe_streaming() -> None:
    session = DataSession(["AAPL", "AAPL", "MSFT"], STOCK_CHANNELS)
    assert session.receive(CONNECTED) == [SendAuth()]
    assert session.receive(AUTHENTICATED) == [
        Send(
            {
                "action": "subscribe",
                **{c: ["AAPL", "MSFT"] for c in STOCK_CHANNELS},
            }
        )
    ]
    assert session.state == "subscribing"
    actions = session.receive(SUBSCRIPTION)
    assert actions == [Ready({"trades": ["AAPL"], "quotes": ["AAPL"], "bars": []})]
    assert session.state == "streaming"
    assert session.receive([orjson.loads(TRADE_AAPL)]) == []
    assert session.receive(SUBSCRIPTION) == []  # a later set is recorded, not "ready" again


def test_channels_per_feed() -> None:
    assert channels_for("crypto") == CRYPTO_CHANNELS
    assert "orderbooks" in CRYPTO_CHANNELS and "statuses" not in CRYPTO_CHANNELS
    assert channels_for("iex") == channels_for("test") == STOCK_CHANNELS
    assert set(STOCK_CHANNELS) == {
        "trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("code", "msg", "kind", "hint"),
    [
        (402, "auth failed", AuthError, "ALPACA_API_KEY"),
        (401, "not authenticated", AuthError, "ALPACA_API_SECRET"),
        (409, "insufficient subscription", AuthError, "TICKPIPE_ALPACA_FEED"),
        (406, "connection limit exceeded", RateLimited, "another session"),
        (404, "auth timeout", VenueError, "auth timeout"),
        (407, "slow client", VenueError, "slow client"),
    ],
)
def test_session_ending_errors(code: int, msg: str, kind: type, hint: str) -> None:
    session = DataSession(["AAPL"], STOCK_CHANNELS)
    session.receive(CONNECTED)
    (action,) = session.receive(error(code, msg))
    assert isinstance(action, Fail)
    assert type(action.error) is kind
    assert hint in str(action.error)
    assert action.error.code == code
    if isinstance(action.error, RateLimited):
        assert action.error.retry_after_s > 0


@pytest.mark.parametrize(("code", "msg"), [(405, "symbol limit exceeded"), (403, "x"), (410, "y")])
def test_other_errors_carry_on(code: int, msg: str) -> None:
    session = DataSession(["AAPL"], STOCK_CHANNELS)
    session.receive(CONNECTED)
    session.receive(AUTHENTICATED)
    assert session.receive(error(code, msg)) == [Refused(code, msg)]
    assert session.state == "streaming"


def test_runtime_changes_wait_for_streaming_and_persist() -> None:
    session = DataSession(["AAPL"], ("trades",))
    assert session.change("subscribe", ["MSFT", "AAPL"]) == []  # not streaming yet: kept
    assert session.symbols == ["AAPL", "MSFT"]
    session.receive(CONNECTED)
    session.receive(AUTHENTICATED)
    session.receive(SUBSCRIPTION)
    assert session.change("subscribe", ["TSLA"]) == [
        Send({"action": "subscribe", "trades": ["TSLA"]})
    ]
    assert session.change("unsubscribe", ["AAPL", "NOPE"]) == [
        Send({"action": "unsubscribe", "trades": ["AAPL"]})
    ]
    assert session.symbols == ["MSFT", "TSLA"]
    with pytest.raises(ValueError):
        session.change("listen", ["X"])


def test_a_change_asked_while_the_first_subscription_is_in_flight_is_sent_once_it_lands() -> None:
    session = DataSession(["ETH/USD"], ("trades", "quotes"))
    session.receive(CONNECTED)
    assert session.receive(AUTHENTICATED) == [
        Send({"action": "subscribe", "trades": ["ETH/USD"], "quotes": ["ETH/USD"]})
    ]
    # the venue has not answered the subscription yet: the changes wait for it
    assert session.change("subscribe", ["BTC/USD"]) == []
    assert session.change("unsubscribe", ["ETH/USD"]) == []
    landed = [{"T": "subscription", "trades": ["ETH/USD"], "quotes": ["ETH/USD"], "bars": []}]
    assert session.receive(landed) == [
        Ready({"trades": ["ETH/USD"], "quotes": ["ETH/USD"], "bars": []}),
        Send({"action": "subscribe", "trades": ["BTC/USD"], "quotes": ["BTC/USD"]}),
        Send({"action": "unsubscribe", "trades": ["ETH/USD"], "quotes": ["ETH/USD"]}),
    ]
    # once streaming, the venue's answers to those changes ask for nothing more
    both = [{"T": "subscription", "trades": ["BTC/USD"], "quotes": ["BTC/USD"]}]
    assert session.receive(both) == []
    # a refused first subscription releases the waiting changes too
    refused = DataSession(["ETH/USD"], ("trades",))
    refused.receive(CONNECTED)
    refused.receive(AUTHENTICATED)
    assert refused.change("subscribe", ["BTC/USD"]) == []
    answer = refused.receive([{"T": "error", "code": 405, "msg": "symbol limit exceeded"}])
    assert answer[1:] == [Send({"action": "subscribe", "trades": ["BTC/USD"]})]
    # what the venue confirmed as asked gives no extra message
    quiet = DataSession(["AAPL"], ("trades",))
    quiet.receive(CONNECTED)
    quiet.receive(AUTHENTICATED)
    assert quiet.receive([{"T": "subscription", "trades": ["AAPL"]}]) == [
        Ready({"trades": ["AAPL"]})
    ]


def test_trading_session_auth_listen_and_refusals() -> None:
    session = TradingSession()
    assert session.opening() == [SendAuth()]
    ok = {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}}
    assert session.receive(ok) == [
        Send({"action": "listen", "data": {"streams": ["trade_updates"]}})
    ]
    listening = {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    assert session.receive(listening) == [Ready({"streams": ["trade_updates"]})]
    update = {"stream": "trade_updates", "data": {"event": "new", "order": {}}}
    assert session.receive(update) == []
    bad = {
        "stream": "authorization",
        "data": {"action": "authenticate", "message": "access key verification failed",
                 "status": "unauthorized"},
    }  # fmt: skip
    (fail,) = TradingSession().receive(bad)
    assert isinstance(fail, Fail) and isinstance(fail.error, AuthError)
    assert "access key verification failed" in str(fail.error)
    assert "ALPACA_API_KEY" in str(fail.error)
    (fatal,) = session.receive({"action": "error", "data": {"error_message": "internal error"}})
    assert isinstance(fatal, Fail) and not isinstance(fatal.error, AuthError)


def test_client_messages_and_encodings() -> None:
    message = auth_message("k", "s")
    assert message == {"action": "auth", "key": "k", "secret": "s"}
    assert encode_client(message, use_msgpack=False) == '{"action":"auth","key":"k","secret":"s"}'
    packed = encode_client(message, use_msgpack=True)
    assert isinstance(packed, bytes) and msgpack.unpackb(packed) == message
    assert upgrade_headers("msgpack") == {"Content-Type": "application/msgpack"}
    assert upgrade_headers("json") == {}
    assert subscription_message("unsubscribe", ["A", "A"], ("quotes",)) == {
        "action": "unsubscribe",
        "quotes": ["A"],
    }


def test_decode_frame_text_json_bytes_and_msgpack() -> None:
    assert decode_frame("[" + TRADE_AAPL + "]")[0]["p"] == 126.55
    trading = b'{"stream":"listening","data":{"streams":[]}}'
    assert decode_frame(trading)["stream"] == "listening"
    stamp = msgpack.Timestamp.from_unix_nano(1_700_000_000_123_456_789)
    packed = msgpack.packb([{"T": "t", "S": "AAPL", "t": stamp}], datetime=False)
    assert decode_frame(packed)[0]["t"] == stamp
    with pytest.raises(DecodeError):
        decode_frame("[{")
    with pytest.raises(DecodeError):
        decode_frame(b"\xc1")


def test_route_whole_frame_when_one_partition() -> None:
    text = "[" + TRADE_AAPL + "," + TRADE_AAPL + "]"
    (routed,) = route_frame(text, orjson.loads(text), venue="alpaca", shards=2, first=FIRST)
    assert routed.data is text and not routed.split
    assert routed.partition == Partition("alpaca", 0)  # AAPL hashes to shard 0
    # One shard: never decoded further, always whole to the first partition.
    (one,) = route_frame("[]", [], venue="alpaca", shards=1, first=FIRST)
    assert one.partition == FIRST and not one.split


def test_route_splits_json_keeping_the_exact_number_text() -> None:
    text = f"[{TRADE_AAPL}, {QUOTE_FAKE},{BAR_SPY.replace('389.12', '389.120')}]"
    routed = route_frame(text, orjson.loads(text), venue="alpaca", shards=2, first=FIRST)
    by_partition = {r.partition.shard: r for r in routed}
    assert all(r.split for r in routed)
    assert by_partition[0].data == f"[{TRADE_AAPL}]"
    one = by_partition[1].data
    assert isinstance(one, str) and '"c":389.120' in one
    assert [m["S"] for m in orjson.loads(one)] == ["FAKEPACA", "SPY"]


def test_route_control_messages_go_to_the_first_partition() -> None:
    text = '[{"T":"subscription","trades":["FAKEPACA"]},' + QUOTE_FAKE + "]"
    routed = route_frame(text, orjson.loads(text), venue="alpaca", shards=2, first=FIRST)
    assert [(r.partition.shard, r.split) for r in routed] == [(0, True), (1, True)]


def test_route_splits_msgpack_byte_exact_with_timestamps() -> None:
    stamp = msgpack.Timestamp.from_unix_nano(1_721_807_813_639_713_735)
    messages = [
        {"T": "t", "S": "AAPL", "i": 1, "p": 126.55, "s": 1, "t": stamp},
        {"T": "q", "S": "FAKEPACA", "bp": 133.85, "ap": 135.77, "t": stamp},
    ] + [{"T": "t", "S": "AAPL", "i": n, "p": 1.5, "s": 2, "t": stamp} for n in range(2, 20)]
    packed = msgpack.packb(messages, datetime=False)
    routed = route_frame(packed, decode_frame(packed), venue="alpaca", shards=2, first=FIRST)
    parts = {r.partition.shard: r.data for r in routed}
    aapl = msgpack.unpackb(parts[0], raw=False)
    assert len(aapl) == 19 and aapl[0]["t"] == stamp  # 19 elements: a 16-bit array header
    assert aapl == [m for m in messages if m["S"] == "AAPL"]
    assert msgpack.unpackb(parts[1], raw=False) == [messages[1]]
    assert msgpack.packb([messages[1]], datetime=False) == parts[1]


def test_element_spans_handle_strings_with_brackets_and_escapes() -> None:
    text = '[ {"a":"x],\\"{"} , [1,2], "s,]", 3 ]'
    assert element_spans(text) == ['{"a":"x],\\"{"}', "[1,2]", '"s,]"', "3"]
    assert element_spans("[]") == []
    with pytest.raises(DecodeError):
        element_spans("[1,2")
    with pytest.raises(DecodeError):
        element_spans(b"\x81\xa1a\x01")  # a map, not an array


def test_tape_encoding_rule_for_msgpack_and_binary_json() -> None:
    tape = ConnectionTape("alpaca:0/x.1", "alpaca", "market", "ws://h/v2/test")
    packed = msgpack.packb([{"T": "success", "msg": "connected"}])
    frame = tape.frame(packed, 5)
    assert frame.kind == "ws-binary" and base64.b64decode(frame.data) == packed
    json_bytes = b'{"stream":"listening","data":{"streams":["trade_updates"]}}'
    assert tape.frame(json_bytes, 6).kind == "ws"
    assert tape.frame(json_bytes, 6).data == json_bytes.decode()


def test_links_and_key_check() -> None:
    settings = Settings(
        venue="alpaca",
        symbols=("BTC/USD", "ETH/USD"),
        shards=2,
        alpaca_feed="crypto",
        alpaca_api_key=Secret("k"),
        alpaca_api_secret=Secret("s"),
    )
    data, trading = alpaca_links(settings)
    assert data.url.endswith("/v1beta3/crypto/us")
    assert data.stream == settings.keys.raw(Partition("alpaca", 0))
    assert trading.private and trading.stream == settings.keys.private_raw("alpaca")
    check_alpaca_keys(settings)
    with pytest.raises(ConfigError, match="ALPACA_API_KEY and ALPACA_API_SECRET"):
        check_alpaca_keys(Settings(venue="alpaca", alpaca_api_key=Secret("k")))


def test_control_entries_accept_pairs_only_when_asked() -> None:
    request = parse_control({"action": "subscribe", "symbols": "btc/usd, BRK.B"}, pairs=True)
    assert request.symbols == ("BTC/USD", "BRK.B")
    with pytest.raises(DecodeError):
        parse_control({"action": "subscribe", "symbols": "BTC/USD"})
    with pytest.raises(DecodeError):
        parse_symbols("BTC-USD", pairs=True)


def test_alpaca_control_applies_subscriptions_and_never_a_backfill(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A backfill entry used to reach the adapter as a change, which unsubscribed the symbol."""

    class Adapter:
        def __init__(self) -> None:
            self.changes: list[tuple[str, list[str]]] = []

        def change(self, action: str, symbols: list[str]) -> None:
            self.changes.append((action, symbols))

    adapter = Adapter()
    control = AdapterControl(Settings(venue="alpaca"), adapter)
    backfill = {"action": "backfill", "symbol": "AAPL", "first_id": "1", "last_id": "9",
                "stream": "trades"}  # fmt: skip
    for fields in (
        {"action": "subscribe", "symbols": "AAPL,BTC/USD"},
        backfill,
        {"action": "snapshot", "symbol": "AAPL"},
        {"action": "unsubscribe", "symbols": "BTC/USD"},
    ):
        control._handle("tp:{alpaca:0}:control", fields)
    assert adapter.changes == [("subscribe", ["AAPL", "BTC/USD"]), ("unsubscribe", ["BTC/USD"])]
    assert any("ignoring a backfill request" in r.getMessage() for r in caplog.records)
