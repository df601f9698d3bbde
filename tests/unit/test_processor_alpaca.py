"""Alpaca market-data frames through the pure processor core: JSON and msgpack, every type."""

from __future__ import annotations

import base64
import dataclasses
from decimal import Decimal
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import RawFrame, Trade
from tickpipe.common.settings import Settings
from tickpipe.processor.core import PartitionState, build_strategies, process_batch
from tickpipe.venues.alpaca import wire as alpaca

P = "alpaca:0"
TS_RECV = 1_700_000_000_000_000_000
#: The protocol examples span 2021-2024 and are all "received" at TS_RECV: these tests are about
#: parsing, so the event-time bounds are opened wide (test_processor_plausible checks them).
WIDE_MS = 10 * 365 * 86_400_000

# Frames in the exact shapes of protocols.md §3.3.
STOCK_TRADE = (
    '[{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,'
    '"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"}]'
)
CRYPTO_TRADE = (
    '[{"T":"t","S":"AVAX/USD","p":47.299,"s":29.205707815,'
    '"t":"2024-03-12T10:27:48.858228144Z","i":3447222699101865076,"tks":"S"}]'
)
QUOTE = (
    '[{"T":"q","S":"FAKEPACA","bx":"O","bp":133.85,"bs":4,"ax":"R","ap":135.77,"as":5,'
    '"c":["R"],"z":"A","t":"2024-07-24T07:56:53.639713735Z"}]'
)
MINUTE_BAR = (
    '[{"T":"b","S":"FAKEPACA","o":132.65,"h":136,"l":132.12,"c":134.65,"v":205,'
    '"t":"2024-07-24T07:56:00Z","n":16,"vw":133.7}]'
)
DAILY_BAR = (
    '[{"T":"d","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":749378,'
    '"t":"2021-02-16T04:00:00Z"}]'
)
UPDATED_BAR = (
    '[{"T":"u","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,'
    '"t":"2021-02-22T19:15:00Z"}]'
)
STATUS = (
    '[{"T":"s","S":"AAPL","sc":"H","sm":"Trading Halt","rc":"T12",'
    '"rm":"Trading Halted; For information requested by NASDAQ","t":"2021-02-22T19:15:00Z",'
    '"z":"C"}]'
)
CORRECTION = (
    '[{"T":"c","S":"AAPL","x":"V","oi":7,"op":126.55,"os":1,"oc":["@"],"ci":1000000007,'
    '"cp":126.56,"cs":1,"cc":["@"],"z":"C","t":"2021-02-22T19:15:01Z"}]'
)
CANCEL = (
    '[{"T":"x","S":"AAPL","i":7,"x":"V","p":126.55,"s":1,"a":"C","z":"C",'
    '"t":"2021-02-22T19:15:02Z"}]'
)

NS_144208 = 1_614_009_104_208_000_000  # 2021-02-22T15:51:44.208Z


def ts(text: str) -> msgpack.Timestamp:
    return msgpack.Timestamp.from_unix_nano(alpaca.parse_time(text))


def as_msgpack(frame_json: str) -> str:
    """Re-encode a §3.3 JSON frame as the venue's msgpack (Timestamps), base64 as stored."""
    messages = orjson.loads(frame_json)
    for message in messages:
        if "t" in message:
            message["t"] = ts(message["t"])
    return base64.b64encode(msgpack.packb(messages, datetime=False)).decode()


def raw(data: str, kind: str = "ws", seq: int = 0) -> RawFrame:
    return RawFrame(kind, "alpaca", "c1", seq, TS_RECV, data)


def state(settings: Settings | None = None) -> PartitionState:
    strategies = build_strategies(settings) if settings else ()
    return PartitionState(
        P, "alpaca", strategies, max_event_ahead_ms=WIDE_MS, max_event_age_ms=WIDE_MS
    )


def run(frames: list[RawFrame], st: PartitionState | None = None, first: int = 1) -> Any:
    st = st or state()
    entries = [(f"{first + n}-0", frame) for n, frame in enumerate(frames)]
    return process_batch(st, entries, 99)


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_stock_and_crypto_trades(encode: str) -> None:
    frames = [STOCK_TRADE, CRYPTO_TRADE]
    if encode == "msgpack":
        out = run([raw(as_msgpack(f), "ws-binary") for f in frames])
    else:
        out = run([raw(f) for f in frames])
    assert not out.dead_letters
    assert out.trades == [
        Trade("alpaca", "AAPL", "96921", "126.55", "1", "unknown", NS_144208, TS_RECV, 99, "1-0#0"),
        Trade(
            "alpaca",
            "AVAX/USD",
            "3447222699101865076",
            "47.299",
            "29.205707815",
            "sell",
            1_710_239_268_858_228_144,
            TS_RECV,
            99,
            "2-0#0",
        ),
    ]


def test_json_numbers_keep_their_exact_text() -> None:
    frame = '[{"T":"t","i":1,"S":"X","p":126.5500,"s":1.0e-5,"t":"2021-02-22T15:51:44Z"}]'
    [trade] = run([raw(frame)]).trades
    assert (trade.price, trade.qty) == ("126.5500", "0.000010")


def test_msgpack_floats_render_as_plain_decimals() -> None:
    packed = msgpack.packb(
        [{"T": "t", "i": 2, "S": "X", "p": 0.1, "s": 1e-05, "t": ts("2021-02-22T15:51:44Z")}]
    )
    [trade] = run([raw(base64.b64encode(packed).decode(), "ws-binary")]).trades
    assert (trade.price, trade.qty) == ("0.1", "0.00001")


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_quote(encode: str) -> None:
    frame = raw(as_msgpack(QUOTE), "ws-binary") if encode == "msgpack" else raw(QUOTE)
    [quote] = run([frame]).quotes
    assert (quote.symbol, quote.bid_price, quote.bid_qty) == ("FAKEPACA", "133.85", "4")
    assert (quote.ask_price, quote.ask_qty, quote.update_id) == ("135.77", "5", "")
    assert quote.ts_event == 1_721_807_813_639_713_735 and quote.ts_proc == 99


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_venue_bars_minute_daily_updated(encode: str) -> None:
    frames = [MINUTE_BAR, DAILY_BAR, UPDATED_BAR, UPDATED_BAR, MINUTE_BAR]
    if encode == "msgpack":
        out = run([raw(as_msgpack(f), "ws-binary") for f in frames])
    else:
        out = run([raw(f) for f in frames])
    minute, daily, updated, again, minute_again = out.venue_bars
    assert (minute.interval, minute.open, minute.high, minute.volume) == (
        "1m",
        "132.65",
        "136",
        "205",
    )
    assert (minute.trades, minute.final, minute.revision) == (16, True, 0)
    assert minute.ts_open == 1_721_807_760_000_000_000
    assert (daily.interval, daily.trades, daily.revision, daily.symbol) == ("1d", 0, 0, "SPY")
    assert (updated.interval, updated.revision, again.revision) == ("1m", 1, 2)
    assert minute_again.revision == 1  # the same (symbol, t) seen again: an upsert
    assert out.bars == [] and out.trades == []


def test_updated_bar_revises_an_earlier_minute_bar() -> None:
    minute = MINUTE_BAR.replace('"v":205', '"v":206')
    out = run([raw(MINUTE_BAR), raw(minute.replace('"T":"b"', '"T":"u"'))])
    assert [(b.revision, b.volume) for b in out.venue_bars] == [(0, "205"), (1, "206")]


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_status_correction_and_cancel(encode: str) -> None:
    frames = [STATUS, CORRECTION, CANCEL]
    if encode == "msgpack":
        out = run([raw(as_msgpack(f), "ws-binary") for f in frames])
    else:
        out = run([raw(f) for f in frames])
    [status] = out.statuses
    assert (status.symbol, status.status_code, status.reason_code) == ("AAPL", "H", "T12")
    assert status.status_message == "Trading Halt" and status.entry_id == "1-0"
    correction, cancel = out.corrections
    fields = correction.to_fields()
    assert fields["kind"] == "correction" and fields["original_id"] == "7"
    assert (fields["original_price"], fields["corrected_price"]) == ("126.55", "126.56")
    assert (fields["corrected_id"], fields["original_conditions"]) == ("1000000007", "@")
    assert cancel.kind == "cancel" and cancel.action == "C" and cancel.original_size == "1"
    assert cancel.corrected_id == "" and cancel.ts_event == 1_614_021_302_000_000_000
    assert out.trades == [] and not out.dead_letters


def test_duplicates_dropped_and_id_jumps_are_not_gaps() -> None:
    frame = (
        '[{"T":"t","i":5,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44Z"},'
        '{"T":"t","i":900,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44Z"},'
        '{"T":"t","i":5,"S":"B","p":1,"s":1,"t":"2021-02-22T15:51:44Z"}]'
    )
    st = state()
    out = run([raw(frame), raw(frame)], st)
    assert [(t.symbol, t.trade_id, t.src) for t in out.trades] == [
        ("A", "5", "1-0#0"),
        ("A", "900", "1-0#1"),
        ("B", "5", "1-0#2"),
    ]
    assert out.gaps == [] and st.counters["trade_id_gaps"] == 0
    assert st.counters["duplicate_trades"] == 3
    late = '[{"T":"t","i":7,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44Z"}]'
    assert [t.trade_id for t in run([raw(late)], st, first=5).trades] == ["7"]


def test_checkpoint_resumes_dedup_and_venue_bar_revisions() -> None:
    first = state()
    run([raw(STOCK_TRADE), raw(MINUTE_BAR)], first)
    restored = PartitionState.from_bytes(
        first.to_bytes(), P, "alpaca", max_event_ahead_ms=WIDE_MS, max_event_age_ms=WIDE_MS
    )
    out = run([raw(STOCK_TRADE), raw(MINUTE_BAR.replace('"T":"b"', '"T":"u"'))], restored, 3)
    assert out.trades == [] and restored.counters["duplicate_trades"] == 1
    assert [b.revision for b in out.venue_bars] == [1]


def test_split_batches_give_the_same_outputs() -> None:
    frames = [
        raw(
            f'[{{"T":"t","i":{i},"S":"FAKEPACA","p":{100 + i % 7},"s":{i},'
            f'"t":"2024-07-24T07:56:{i:02d}.5Z"}},'
            f'{{"T":"q","S":"FAKEPACA","bp":1,"bs":1,"ap":2,"as":1,'
            f'"t":"2024-07-24T07:56:{i:02d}.5Z"}}]',
            seq=i,
        )
        for i in range(1, 40)
    ]
    whole = run(frames)
    st = state()
    parts = [run(frames[i : i + 7], st, first=1 + i) for i in range(0, len(frames), 7)]
    assert [t for p in parts for t in p.trades] == whole.trades
    finals = [b for p in parts for b in p.bars if b.final]
    assert finals == [b for b in whole.bars if b.final] and finals
    assert {b.interval for b in finals} == {"1s"}


def test_signals_from_alpaca_trades_have_distinct_ids() -> None:
    settings = Settings(
        venue="alpaca", symbols=("FAKEPACA",), thresholds=(("FAKEPACA", "100"),), hysteresis_bps="1"
    )
    frame = (
        '[{"T":"t","i":1,"S":"FAKEPACA","p":99,"s":1,"t":"2024-07-24T07:56:00Z"},'
        '{"T":"t","i":2,"S":"FAKEPACA","p":101,"s":1,"t":"2024-07-24T07:56:01Z"},'
        '{"T":"t","i":3,"S":"FAKEPACA","p":99,"s":1,"t":"2024-07-24T07:56:02Z"}]'
    )
    out = run([raw(frame)], state(settings))
    assert [(s.side, s.signal_id, s.venue) for s in out.signals] == [
        ("buy", "alpaca|FAKEPACA|t2|threshold_cross|0", "alpaca"),
        ("sell", "alpaca|FAKEPACA|t3|threshold_cross|0", "alpaca"),
    ]
    assert [s.cause for s in out.signals] == ["1-0#1", "1-0#2"]  # the raw entry, as before


def test_control_messages_and_unhandled_types_are_counted() -> None:
    frames = [
        '[{"T":"success","msg":"connected"}]',
        '[{"T":"subscription","trades":["FAKEPACA"],"quotes":[],"bars":[]}]',
        '[{"T":"error","code":406,"msg":"connection limit exceeded"}]',
        '[{"T":"l","S":"AAPL","u":1,"d":1,"i":"A","t":"2024-08-08T23:54:15Z","z":"C"}]',
    ]
    st = state()
    out = run([raw(f) for f in frames] + [RawFrame("marker", "alpaca", "c1", 9, 1, "{}")], st)
    assert not out.dead_letters
    counts = {k: st.counters[k] for k in ("replies", "venue_errors", "ignored", "markers")}
    assert counts == {"replies": 2, "venue_errors": 1, "ignored": 1, "markers": 1}


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("ws", "not json", "not JSON"),
        ("ws", "{}", "no type"),
        ("ws", "[]", "non-empty array"),
        ("ws-binary", "***", "not base64"),
        ("ws-binary", base64.b64encode(b"\xc1").decode(), "not msgpack"),
        ("blob", "[]", "unknown raw frame kind"),
        ("ws", '[{"T":"t","i":1,"S":"A","s":1,"t":"2021-02-22T15:51:44Z"}]', "'p'"),
        ("ws", '[{"T":"t","i":1,"S":"A","p":-1,"s":1,"t":"2021-02-22T15:51:44Z"}]', "negative"),
        ("ws", '[{"T":"t","i":1,"S":"A","p":0,"s":1,"t":"2021-02-22T15:51:44Z"}]', "positive"),
        ("ws", '[{"T":"t","i":1,"S":"A","p":1,"s":1,"t":"yesterday"}]', "RFC 3339"),
        ("ws", '[{"T":"t","i":1,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44"}]', "RFC 3339"),
        ("ws", '[{"T":"t","i":-1,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44Z"}]', "trade id"),
        ("ws", '[{"T":"t","i":1,"S":"","p":1,"s":1,"t":"2021-02-22T15:51:44Z"}]', "symbol"),
        ("ws", '[{"T":"t","i":1,"S":"A","p":NaN,"s":1,"t":"2021-02-22T15:51:44Z"}]', "JSON"),
        ("ws", '[{"T":"b","S":"A","o":1,"h":1,"l":1,"c":1,"t":"2021-02-22T15:51:00Z"}]', "'v'"),
        (
            "ws",
            '[{"T":"q","S":"A","bp":"x","bs":1,"ap":1,"as":1,"t":"2021-02-22T15:51:00Z"}]',
            "bid",
        ),
        ("ws", '[{"T":"c","S":"A","oi":1,"op":1,"os":1,"t":"2021-02-22T15:51:00Z"}]', "'ci'"),
        ("ws", '[{"T":"s","S":"A","sc":"H"}]', "status time"),
        ("ws", '[{"msg":"no type"}]', "no type"),
        ("ws", "[5]", "not an object"),
    ],
)
def test_bad_frames_become_dead_letters(kind: str, data: str, reason: str) -> None:
    st = state()
    out = run([raw(data, kind)], st)
    [dead] = out.dead_letters
    assert reason in dead.reason and dead.entry_id == "1-0" and dead.data == data
    assert out.trades == [] and st.counters["dead_letters"] == 1


def test_one_bad_message_does_not_lose_the_others() -> None:
    frame = (
        '[{"T":"t","i":1,"S":"A","p":1,"s":1,"t":"2021-02-22T15:51:44Z"},'
        '{"T":"t","i":2,"S":"A","p":"oops","s":1,"t":"2021-02-22T15:51:44Z"},'
        '{"T":"t","i":3,"S":"A","p":2,"s":1,"t":"2021-02-22T15:51:45Z"}]'
    )
    out = run([raw(frame)])
    assert [t.trade_id for t in out.trades] == ["1", "3"]
    [dead] = out.dead_letters
    assert dead.reason.startswith("message 1 (T='t'):") and "oops" in dead.reason


def test_binance_frames_in_the_same_core_are_unchanged() -> None:
    st = PartitionState("binance:0", "binance")
    frame = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,'
        '"p":"1.5","q":"2","T":5,"m":true}}'
    )
    [trade] = process_batch(st, [("1-0", RawFrame("ws", "binance", "c", 0, 1, frame))], 3).trades
    assert dataclasses.astuple(trade)[:7] == (
        "binance",
        "BTCUSDT",
        "7",
        "1.5",
        "2",
        "sell",
        5_000_000,
    )
    assert trade.src == "1-0"


def test_parse_time_forms() -> None:
    assert alpaca.parse_time("2021-02-22T15:51:45.335689322Z") == 1_614_009_105_335_689_322
    assert alpaca.parse_time("2022-04-19T13:45:04.981350886-04:00") == 1_650_390_304_981_350_886
    assert alpaca.parse_time(msgpack.Timestamp(1, 5)) == 1_000_000_005
    with pytest.raises(DecodeError):
        alpaca.parse_time(12)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "1e999999", "0e-9999", "12.5", "-1", "2021-02-22T15:51:44.208Z", "9" * 30]
    ),
    st.text(max_size=8),
    st.builds(msgpack.Timestamp, st.integers(-(2**40), 2**40), st.integers(0, 999_999_999)),
    st.lists(st.integers(0, 9), max_size=2),
)
_KEYS = "S i p s t bp bs ap as o h l c v n oi op os ci cp cs tks sc".split()
_MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"T": st.sampled_from(["t", "q", "b", "u", "d", "s", "c", "x", "o", "error", 5])},
        optional=dict.fromkeys(_KEYS, _VALUES),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_MESSAGES)
def test_fuzzed_messages_never_raise_and_every_trade_is_sound(messages: list[Any]) -> None:
    packed = base64.b64encode(msgpack.packb(messages, datetime=False)).decode()
    st_ = state()
    out = run([raw(packed, "ws-binary")], st_)
    assert out.acked == ["1-0"]
    handled = len(out.trades) + st_.counters["duplicate_trades"] + len(out.quotes)
    handled += len(out.venue_bars) + len(out.corrections) + len(out.statuses)
    handled += sum(st_.counters[k] for k in ("ignored", "venue_errors", "replies"))
    assert handled + len(out.dead_letters) == len(messages)
    for trade in out.trades:
        assert Decimal(trade.price) > 0 and Decimal(trade.qty) >= 0
        assert "e" not in trade.price.lower() and 0 <= int(trade.trade_id) < 2**64
    st_.to_bytes()  # the checkpoint always serialises
