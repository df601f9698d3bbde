"""Bars on exchange time: bucket maths, finalisation, partial revisions, decimal volume."""

from __future__ import annotations

from decimal import Decimal

import msgpack

from common.binance import MS
from common.schema import Bar, Trade
from processor.bars import BarBuilder, bucket_start

S = 1000  # milliseconds per second


def trade(tid: int, price: str, qty: str = "1", ts_ms: int = 0, symbol: str = "BTCUSDT") -> Trade:
    return Trade(
        venue="binance",
        symbol=symbol,
        trade_id=str(tid),
        price=price,
        qty=qty,
        side="buy",
        ts_event=ts_ms * MS,
        ts_recv=ts_ms * MS + 5,
    )


def one_second() -> BarBuilder:
    return BarBuilder("binance", {"1s": 1_000_000_000})


def test_bucket_start_floors_to_the_interval() -> None:
    second = 1_000_000_000
    assert bucket_start(0, second) == 0
    assert bucket_start(second - 1, second) == 0
    assert bucket_start(second, second) == second
    assert bucket_start(61 * second + 5, 60 * second) == 60 * second
    assert bucket_start(1723161255342 * MS, 60 * second) == 1723161240 * second


def test_default_intervals_are_one_second_and_one_minute() -> None:
    builder = BarBuilder("binance")
    builder.on_trade(trade(1, "10", ts_ms=61_500))
    assert {b.interval: b.ts_open for b in builder.flush()} == {
        "1s": 61 * S * MS,
        "1m": 60 * S * MS,
    }


def test_bar_finalises_when_a_trade_arrives_in_a_later_bucket() -> None:
    builder = one_second()
    assert builder.on_trade(trade(1, "10.0", "0.5", ts_ms=1_000)) == []
    assert builder.on_trade(trade(2, "12.5", "0.25", ts_ms=1_400)) == []
    assert builder.on_trade(trade(3, "9.5", "1", ts_ms=1_999)) == []
    finished = builder.on_trade(trade(4, "11", "2", ts_ms=3_000))
    assert finished == [
        Bar(
            venue="binance",
            symbol="BTCUSDT",
            interval="1s",
            ts_open=1_000 * MS,
            open="10.0",
            high="12.5",
            low="9.5",
            close="9.5",
            volume="1.75",
            trades=3,
            first_trade_id="1",
            last_trade_id="3",
            final=True,
            revision=3,
            ts_event=1_999 * MS,
        )
    ]
    (partial,) = builder.flush()
    assert (partial.ts_open, partial.final, partial.trades, partial.open) == (
        3_000 * MS,
        False,
        1,
        "11",
    )


def test_prices_compare_as_decimals_but_keep_the_venue_strings() -> None:
    builder = one_second()
    for tid, price in enumerate(["9.50000000", "10.00000000", "9.90000000", "100"], start=1):
        builder.on_trade(trade(tid, price, ts_ms=100))
    (bar,) = builder.flush()
    # As strings "9.5" > "10.0" and "9.9" > "100": the builder must not compare strings.
    assert (bar.open, bar.high, bar.low, bar.close) == ("9.50000000", "100", "9.50000000", "100")


def test_volume_is_an_exact_decimal_sum() -> None:
    builder = one_second()
    for tid, qty in enumerate(["0.1", "0.2", "0.00000001"], start=1):
        builder.on_trade(trade(tid, "1", qty, ts_ms=10))
    (bar,) = builder.flush()
    assert bar.volume == "0.30000001"
    assert Decimal(bar.volume) == Decimal("0.30000001")


def test_each_touched_bar_is_emitted_once_per_flush_with_growing_revisions() -> None:
    builder = BarBuilder("binance")
    builder.on_trade(trade(1, "10", ts_ms=100))
    builder.on_trade(trade(2, "11", ts_ms=200))
    first = builder.flush()
    assert [(b.interval, b.final, b.revision) for b in first] == [
        ("1s", False, 2),
        ("1m", False, 2),
    ]
    assert builder.flush() == []  # nothing touched since
    builder.on_trade(trade(3, "12", ts_ms=300))
    second = builder.flush()
    assert [(b.interval, b.revision, b.close) for b in second] == [("1s", 3, "12"), ("1m", 3, "12")]


def test_a_bar_finalised_inside_a_batch_is_not_flushed_as_partial() -> None:
    builder = one_second()
    builder.on_trade(trade(1, "10", ts_ms=100))
    finals = builder.on_trade(trade(2, "11", ts_ms=1_100))
    partials = builder.flush()
    assert [b.ts_open for b in finals] == [0]
    assert [(b.ts_open, b.final) for b in partials] == [(1_000 * MS, False)]


def test_symbols_have_separate_bars() -> None:
    builder = one_second()
    builder.on_trade(trade(1, "10", ts_ms=100, symbol="BTCUSDT"))
    assert builder.on_trade(trade(7, "2", ts_ms=1_100, symbol="ETHUSDT")) == []
    assert {b.symbol for b in builder.flush()} == {"BTCUSDT", "ETHUSDT"}


def test_late_trades_are_counted_and_dropped() -> None:
    builder = one_second()
    builder.on_trade(trade(1, "10", ts_ms=2_100))
    builder.flush()
    assert builder.on_trade(trade(2, "99", ts_ms=1_900)) == []
    assert builder.late_trades == 1
    assert builder.flush() == []
    builder.on_trade(trade(3, "11", ts_ms=2_200))
    (bar,) = builder.flush()
    assert (bar.high, bar.trades) == ("11", 2)


def test_state_round_trips_through_msgpack() -> None:
    builder = BarBuilder("binance")
    builder.on_trade(trade(1, "10.10", "0.3", ts_ms=100))
    builder.on_trade(trade(2, "9.90", "0.1", ts_ms=1_700))
    builder.on_trade(trade(3, "1", ts_ms=50))  # late for 1s, on time for 1m
    blob = msgpack.packb(builder.to_state())
    restored = BarBuilder("binance")
    restored.load_state(msgpack.unpackb(blob))
    assert restored.late_trades == 1
    nxt = trade(4, "10.50", "0.6", ts_ms=1_200)
    assert restored.on_trade(nxt) == builder.on_trade(nxt)
    assert restored.flush() == builder.flush()
    assert restored.to_state() == builder.to_state()
