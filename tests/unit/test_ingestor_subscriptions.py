"""Unit tests of stream planning, control-message pacing and control entries."""

from __future__ import annotations

import pytest

from tickpipe.common.errors import ConfigError, DecodeError
from tickpipe.common.settings import load_settings
from tickpipe.ingestor.subscriptions import (
    MAX_STREAMS_PER_CONN,
    PartitionSubs,
    TokenBucket,
    chunked,
    parse_control,
    parse_symbols,
    streams_for,
)
from tickpipe.venues.registry import venue

S = 1_000_000_000
BINANCE = venue("binance").combined_streams
assert BINANCE is not None


def test_streams_for_is_symbol_major_lower_case_and_without_repeats() -> None:
    got = streams_for(
        ["BTCUSDT", "EthUsdt", "BTCUSDT"], ["trade", "depth@100ms"], BINANCE.stream_name
    )
    assert got == ["btcusdt@trade", "btcusdt@depth@100ms", "ethusdt@trade", "ethusdt@depth@100ms"]


def test_two_thousand_streams_fill_slots_up_to_the_cap() -> None:
    subs = PartitionSubs()
    streams = [f"s{n}usdt@trade" for n in range(2000)]
    added = subs.add(streams)
    assert [len(added[0]), len(added[1])] == [MAX_STREAMS_PER_CONN, 2000 - MAX_STREAMS_PER_CONN]
    assert subs.add(streams[:10]) == {}  # already placed
    removed = subs.remove([*streams[:5], "nope@trade"])
    assert removed == {0: streams[:5]}
    assert subs.add(["new@trade"]) == {0: ["new@trade"]}  # the freed room is reused
    assert subs.where("new@trade") == 0 and subs.where(streams[-1]) == 1
    assert subs.streams(1) == streams[MAX_STREAMS_PER_CONN:] and subs.streams(7) == []


def test_token_bucket_keeps_any_second_under_five_messages() -> None:
    bucket = TokenBucket()
    now, sent = 0, []
    while len(sent) < 40:
        wait = bucket.wait_ns(now)
        if wait == 0:
            sent.append(now)
        else:
            now += wait
    for i, t in enumerate(sent):
        in_window = [u for u in sent[i:] if u < t + S]
        assert len(in_window) <= 4
    assert sent[-1] < 12 * S  # and it is not slower than needed (3.5/s)


def test_chunked_splits_evenly() -> None:
    assert chunked(["a", "b", "c"], 2) == [["a", "b"], ["c"]]


def test_parse_control_reads_subscribe_and_snapshot_entries() -> None:
    req = parse_control({b"action": b"subscribe", b"symbols": b"btcusdt, ETHUSDT"})
    assert req.action == "subscribe" and req.symbols == ("BTCUSDT", "ETHUSDT")
    snap = parse_control({"action": "snapshot", "symbol": "BTCUSDT", "reason": "gap"})
    assert snap.symbols == ("BTCUSDT",) and snap.reason == "gap"
    with pytest.raises(DecodeError):
        parse_control({"action": "explode", "symbols": "BTCUSDT"})
    with pytest.raises(DecodeError):
        parse_control({"action": "subscribe", "symbols": ""})
    with pytest.raises(DecodeError):
        parse_symbols("BTC/USDT")


def test_parse_control_reads_a_backfill_request_of_the_processor() -> None:
    fields = {
        b"v": b"1", b"action": b"backfill", b"symbol": b"BTCUSDT", b"first_id": b"150",
        b"last_id": b"200", b"stream": b"aggTrades", b"reason": b"trade id gap",
        b"entry_id": b"1700000000000-3",
    }  # fmt: skip
    req = parse_control(fields)
    assert req.action == "backfill" and req.symbols == ("BTCUSDT",)
    assert (req.first_id, req.last_id, req.stream) == (150, 200, "aggTrades")
    assert req.reason == "trade id gap" and req.entry_id == "1700000000000-3"
    single = parse_control(
        {"action": "backfill", "symbol": "ETHUSDT", "first_id": "7", "last_id": "7",
         "stream": "trades"}
    )  # fmt: skip
    assert (single.first_id, single.last_id, single.entry_id) == (7, 7, "")


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"first_id": ""}, "first_id"),
        ({"last_id": "-3"}, "last_id"),
        ({"first_id": "1e3"}, "first_id"),
        ({"first_id": "\u00b2"}, "first_id"),
        ({"first_id": "9" * 30}, "first_id"),
        ({"first_id": "300"}, "after last_id"),
        ({"stream": "depth"}, "stream"),
        ({"stream": ""}, "stream"),
        ({"symbol": "BTCUSDT,ETHUSDT"}, "one symbol"),
        ({"symbol": ""}, "no symbol"),
    ],
)
def test_parse_control_names_what_is_wrong_with_a_backfill(
    change: dict[str, str], names: str
) -> None:
    fields = {"action": "backfill", "symbol": "BTCUSDT", "first_id": "150", "last_id": "200",
              "stream": "trades", **change}  # fmt: skip
    with pytest.raises(DecodeError, match=names):
        parse_control(fields)


def test_ingestor_settings_parse_and_reject_what_they_should() -> None:
    env = {
        "TICKPIPE_CHANNELS": "trade, aggTrade,kline_1m",
        "TICKPIPE_BINANCE_CONN_LIFETIME_S": "3600",
        "TICKPIPE_INGESTOR_STALE_MAX_S": "30",
        "TICKPIPE_INGESTOR_JOURNAL_MAX_MB": "0",
    }
    s = load_settings(env, dotenv_path=None)
    assert s.channels == ("trade", "aggTrade", "kline_1m")
    assert (s.binance_conn_lifetime_s, s.ingestor_stale_max_s) == (3600.0, 30.0)
    assert s.ingestor_journal_max_mb == 0
    assert load_settings({}, dotenv_path=None).channels == ("trade", "bookTicker", "depth@100ms")
    with pytest.raises(ConfigError, match="TICKPIPE_CHANNELS"):
        load_settings({"TICKPIPE_CHANNELS": "trades"}, dotenv_path=None)
