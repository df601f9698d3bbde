"""The processor's fast paths give exactly what the general ones give (pure, no Redis)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.integration.test_processor_shell import real_frames
from tickpipe.common import decimals
from tickpipe.common.builders import new_raw_frame, new_trade, one_trade
from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import Trades
from tickpipe.common.schema import Bar, Event, Quote, RawFrame, Signal, Trade
from tickpipe.processor.bars import BarBuilder
from tickpipe.processor.lanes import Commit, decode_entries
from tickpipe.processor.wire import (
    commit_call,
    decode_flat_entries,
    fenced_read_commands,
    stream_entries,
    xread_args,
)
from tickpipe.venues.binance import market as frames
from tickpipe.venues.binance import wire as binance

MS = 1_000_000


def real_raw(count: int = 300) -> tuple[RawFrame, ...]:
    return real_frames()[:count]


def _wire(fields: list[tuple[bytes, bytes]] | None) -> list[bytes] | None:
    return None if fields is None else [x for pair in fields for x in pair]


def _pairs(frame: RawFrame) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in frame.to_fields().items()]


def _both(entries: list[tuple[bytes, list[tuple[bytes, bytes]] | None]]) -> tuple[Any, Any]:
    """Decode wire entries with the fast path and redis-py-shaped ones with the general path."""
    fast = decode_flat_entries([[entry_id, _wire(f)] for entry_id, f in entries])
    general = decode_entries(
        [(entry_id, None if f is None else dict(f)) for entry_id, f in entries]
    )
    return fast, general


def test_wire_entries_decode_like_redis_py_entries_for_real_frames() -> None:
    entries = [(f"1-{n}".encode(), _pairs(f)) for n, f in enumerate(real_raw())]
    fast, general = _both(entries)
    assert fast == general and len(fast) == len(real_raw())
    assert all(isinstance(frame, RawFrame) for _, frame in fast)


BAD_ENTRIES: list[list[tuple[bytes, bytes]] | None] = [
    None,  # deleted before it was read
    [],
    [(b"only", b"junk")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"x"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}")],
    [(b"v", b"\xff"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"\xc3")],
    # other field orders, extra fields and repeated fields take the general path
    [(b"kind", b"ws"), (b"v", b"1"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}"), (b"extra", b"\xfe")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"data", b"{}")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}"), (b"data", b"[]")],
    [(b"v", b"1"), (b"kind", b"ws"), (b"venue", b"binance"), (b"conn", b"c"), (b"seq", b"\xd9\xa1"),
     (b"ts_recv", b"1"), (b"channel", b""), (b"data", b"{}")],
]  # fmt: skip


@pytest.mark.parametrize("fields", BAD_ENTRIES)
def test_unusual_wire_entries_decode_like_redis_py_entries(fields: Any) -> None:
    fast, general = _both([(b"5-1", fields)])
    assert fast == general


@given(st.lists(st.tuples(st.sampled_from([b"v", b"kind", b"seq", b"data", b"x"]), st.binary())))
@settings(max_examples=200, deadline=None)
def test_any_wire_entry_decodes_like_a_redis_py_entry(fields: list[tuple[bytes, bytes]]) -> None:
    fast, general = _both([(b"5-1", fields)])
    assert fast == general


def test_stream_entries_takes_every_reply_shape() -> None:
    entry = [b"1-1", [b"v", b"1"]]
    assert stream_entries(None) == [] and stream_entries([]) == []
    assert stream_entries([[b"raw", [entry]]]) == [entry]  # RESP2
    assert stream_entries({b"raw": [entry]}) == [entry]  # a map of stream -> entries
    parsed = (b"1-1", {b"v": b"1"})
    assert stream_entries({b"raw": [[parsed]]}) == [parsed]  # redis-py's RESP3 form
    assert stream_entries({b"raw": [parsed]}) == [parsed]


def test_a_fenced_read_never_blocks_and_only_the_idle_wait_does() -> None:
    commands = fenced_read_commands(
        lease_key="l", fence_key="f", stream="s", group="g", instance="m", cursor=">", count=10
    )
    assert [c[0] for c in commands] == ["WATCH", "EVAL", "MULTI", "XREADGROUP", "XREVRANGE", "EXEC"]
    assert commands[0] == ["WATCH", "l", "f"] and commands[1][2:] == ["2", "l", "f", "m"]
    assert commands[3] == [
        "XREADGROUP", "GROUP", "g", "m", "COUNT", "10", "STREAMS", "s", ">",
    ]  # fmt: skip
    assert xread_args("s", "5-1", 150) == [
        "XREAD", "COUNT", "1", "BLOCK", "150", "STREAMS", "s", "5-1",
    ]  # fmt: skip


def test_commit_call_names_every_key_once_and_keeps_field_order() -> None:
    trade = Trade("binance", "BTCUSDT", "1", "2.5", "0.1", "buy", 10, 11, 12, "1-1")
    odd = {"reason": 'a "quoted"\nline é', "entry_id": "1-1", "data": "\x00"}
    commit = Commit(
        outputs=[("t", trade.to_fields()), ("d", odd), ("t", trade.to_fields())],
        checkpoint=b"\x80\xff binary",
        acked=["1-1", "1-2"],
        frames=2,
    )
    keys, args = commit_call(
        lease_key="l",
        checkpoint_key="c",
        stream="r",
        group="g",
        instance="m1",
        lease_ms=5000,
        commit=commit,
    )
    assert keys == ["l", "c", "r", "t", "d"]
    assert args[:4] == ["m1", "5000", "g", b"\x80\xff binary"]
    acked, names, rows = orjson.loads(args[4])
    assert acked == ["1-1", "1-2"]
    assert names == [list(trade.to_fields()), list(odd)]
    values = list(trade.to_fields().values())
    assert rows == [[4, 1, *values], [5, 2, *odd.values()], [4, 1, *values]]


def _generic(event: Event) -> dict[str, str]:
    return Event.to_fields(event)


ints = st.integers(min_value=0, max_value=2**63)
text = st.text(max_size=12)


@given(st.builds(Trade, text, text, text, text, text, text, ints, ints, ints, text))
def test_trade_fields_match_the_generic_encoding(trade: Trade) -> None:
    assert trade.to_fields() == _generic(trade)
    assert list(trade.to_fields()) == list(_generic(trade))


@given(
    st.builds(
        Bar, text, text, text, ints, text, text, text, text, text, ints, text, text,
        st.booleans(), ints, ints,
    )
)  # fmt: skip
def test_bar_fields_match_the_generic_encoding(bar: Bar) -> None:
    assert list(bar.to_fields().items()) == list(_generic(bar).items())


@given(
    st.builds(Signal, text, text, text, text, text, text, text, text, text, text, ints, ints, ints)
)
def test_signal_fields_match_the_generic_encoding(signal: Signal) -> None:
    assert list(signal.to_fields().items()) == list(_generic(signal).items())


@given(st.builds(Quote, text, text, text, text, text, text, text, ints, ints, ints))
def test_quote_fields_match_the_generic_encoding(quote: Quote) -> None:
    assert list(quote.to_fields().items()) == list(_generic(quote).items())


def test_builders_make_objects_equal_to_the_constructors() -> None:
    trade_args = ("binance", "BTCUSDT", "7", "1.5", "2", "sell", 1, 2, 3, "1-1")
    built = new_trade(*trade_args)
    assert built == Trade(*trade_args) and hash(built) == hash(Trade(*trade_args))
    assert dataclasses.asdict(built) == dataclasses.asdict(Trade(*trade_args))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.price = "9"  # type: ignore[misc]
    raw_args = ("ws", "binance", "c1", 1, 2, "{}", "market")
    assert new_raw_frame(*raw_args) == RawFrame(*raw_args)
    assert one_trade(built) == Trades((built,)) and hash(one_trade(built)) == hash(Trades((built,)))


def test_decimal_cache_gives_equal_values_and_stays_bounded() -> None:
    for n in range(decimals.MAX_CACHED + 10):
        assert decimals.decimal_of(f"{n}.5") == Decimal(f"{n}.5")
    assert len(decimals._cache) <= decimals.MAX_CACHED


PAYLOAD = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 5, "p": "1.50", "q": "0.1", "T": 7, "m": True}
ODD_VALUES = [
    None, True, False, -1, 0, 1, 1.5, "", "0", "0.0", "-1", "1", "1.5", "nan", "inf", "-inf",
    "1e400", "1e-5", " 1.5 ", "1_0", "abc", "BTCUSDT", "btcusdt", "ÄBC", "BTC-USDT", [1], {"a": 1},
]  # fmt: skip


def _slow(entry_id: str, frame: RawFrame, stream: str | None, payload: Any) -> Any:
    try:
        return frames._parse_trade(entry_id, frame, stream, payload)
    except DecodeError as exc:
        return str(exc)


@example(changes={"e": [1]}, removed=set(), stream=None)  # an unhashable event type
@given(
    st.dictionaries(st.sampled_from(sorted(PAYLOAD)), st.sampled_from(ODD_VALUES), max_size=3),
    st.sets(st.sampled_from(sorted(PAYLOAD)), max_size=2),
    st.sampled_from([None, "btcusdt@trade", "ethusdt@trade", "BTCUSDT@trade"]),
)
@settings(max_examples=400, deadline=None)
def test_fast_trade_parser_agrees_with_the_full_one(
    changes: dict[str, Any], removed: set[str], stream: str | None
) -> None:
    payload = {k: v for k, v in {**PAYLOAD, **changes}.items() if k not in removed}
    frame = RawFrame("ws", "binance", "c1", 1, 99, "")
    fast = frames._fast_trade("1-1", frame, stream, payload, 0)
    slow = _slow("1-1", frame, stream, payload)
    if fast is not None:
        assert fast == slow  # accepted: the very same trade
    # And through classify, whichever path it takes, the outcome is the full parser's.
    text = orjson.dumps(payload if stream is None else {"stream": stream, "data": payload})
    frame = RawFrame("ws", "binance", "c1", 1, 99, text.decode())
    try:
        result: Any = frames.classify("1-1", frame)
    except DecodeError as exc:
        result = str(exc)
    expected: Any = _slow("1-1", frame, *binance.unwrap(frame.data))
    if isinstance(expected, Trade):
        expected = frames.Trades((expected,))
    if isinstance(result, str) and isinstance(expected, str):
        return  # both refused (the message may come from another branch of classify)
    assert result == expected


def test_fast_trade_stamps_ts_proc() -> None:
    frame = RawFrame("ws", "binance", "c1", 1, 99, "")
    trade = frames._fast_trade("1-1", frame, "btcusdt@trade", PAYLOAD, 123)
    assert trade == dataclasses.replace(_slow("1-1", frame, "btcusdt@trade", PAYLOAD), ts_proc=123)


@given(
    st.lists(
        st.tuples(st.sampled_from(["AAA", "BBB"]), st.integers(0, 130_000), st.integers(1, 30)),
        max_size=150,
    ),
    st.sampled_from(["skip", "carry"]),
)
@settings(max_examples=150, deadline=None)
def test_bar_builder_folding_into_the_last_buckets_changes_nothing(
    prints: list[tuple[str, int, int]], empty: str
) -> None:
    def builder() -> BarBuilder:
        return BarBuilder("binance", lateness_ns=1_500 * MS, horizon_ns=30_000 * MS, empty=empty)

    warm, cold = builder(), builder()
    out_warm: list[Any] = []
    out_cold: list[Any] = []
    for n, (symbol, ms, price) in enumerate(prints, start=1):
        trade = Trade("binance", symbol, str(n), f"{price}.5", "0.25", "buy", ms * MS, 0, 0, "")
        cold._hot.clear()  # always the general path
        out_warm.append(warm.on_trade(trade))
        out_cold.append(cold.on_trade(trade))
        if n % 7 == 0:
            out_warm.append(warm.flush())
            out_cold.append(cold.flush())
    assert out_warm == out_cold
    assert warm.flush() == cold.flush() and warm.to_state() == cold.to_state()
