"""Bars on exchange time: watermark finalisation, late revisions, empty-bar policy, decimals."""

from __future__ import annotations

from decimal import Decimal

import msgpack

from tests.builders import build_trade
from tickpipe.common.schema import Bar, Trade
from tickpipe.common.units import MS
from tickpipe.processor.bars import BarBuilder, bucket_start

S = 1000  # milliseconds per second


def trade(tid: int, price: str, qty: str = "1", ts_ms: int = 0, symbol: str = "BTCUSDT") -> Trade:
    at_ns = ts_ms * MS
    return build_trade(
        symbol=symbol, trade_id=str(tid), price=price, qty=qty, ts_event=at_ns, ts_recv=at_ns + 5
    )


def one_second(lateness_ms: int = 0, horizon_ms: int = 0, empty: str = "skip") -> BarBuilder:
    return BarBuilder(
        "binance",
        {"1s": 1_000_000_000},
        lateness_ns=lateness_ms * MS,
        horizon_ns=horizon_ms * MS,
        empty=empty,
    )


def finals(builder: BarBuilder, t: Trade) -> list[Bar]:
    bars, too_late = builder.on_trade(t)
    assert too_late == []
    return bars


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


def test_bar_finalises_when_the_watermark_passes_its_end() -> None:
    builder = one_second()
    assert finals(builder, trade(1, "10.0", "0.5", ts_ms=1_000)) == []
    assert finals(builder, trade(2, "12.5", "0.25", ts_ms=1_400)) == []
    assert finals(builder, trade(3, "9.5", "1", ts_ms=1_999)) == []
    finished = finals(builder, trade(4, "11", "2", ts_ms=3_000))
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


def test_lateness_holds_a_bar_open_until_the_watermark_passes() -> None:
    builder = one_second(lateness_ms=500)
    finals(builder, trade(1, "10", ts_ms=1_100))
    assert finals(builder, trade(2, "11", ts_ms=2_499)) == []  # watermark 1999 < end 2000
    assert finals(builder, trade(3, "9", ts_ms=1_800)) == []  # still open: folded in
    (bar,) = finals(builder, trade(4, "12", ts_ms=2_500))  # watermark 2000 = end
    assert (bar.ts_open, bar.final, bar.trades, bar.low) == (1_000 * MS, True, 2, "9")
    assert builder.watermark == 2_000 * MS


def test_a_quiet_symbol_finalises_on_other_events() -> None:
    builder = one_second()
    finals(builder, trade(1, "10", ts_ms=100, symbol="BTCUSDT"))
    (bar,) = finals(builder, trade(7, "2", ts_ms=1_100, symbol="ETHUSDT"))
    assert (bar.symbol, bar.final, bar.ts_open) == ("BTCUSDT", True, 0)
    assert builder.advance(1_500 * MS) == []
    (eth,) = builder.advance(2_000 * MS)  # e.g. a depth diff's event time
    assert (eth.symbol, eth.final) == ("ETHUSDT", True)
    assert builder.advance(1_000 * MS) == []  # time never goes back


def test_a_late_trade_within_the_horizon_revises_the_final_bar() -> None:
    builder = one_second(horizon_ms=5_000)
    finals(builder, trade(1, "10", "1", ts_ms=100))
    (first,) = finals(builder, trade(2, "11", "1", ts_ms=1_100))
    (revised,) = finals(builder, trade(3, "15", "2", ts_ms=900))
    assert (first.final, first.revision) == (True, 1)
    assert (revised.final, revised.revision, revised.trades) == (True, 2, 2)
    assert (revised.high, revised.close, revised.volume) == ("15", "15", "3")
    assert builder.revisions == 1
    (partial,) = builder.flush()  # the late trade does not touch the open bar
    assert (partial.ts_open, partial.revision) == (1_000 * MS, 1)


def test_a_trade_past_the_horizon_is_reported_too_late() -> None:
    builder = one_second(horizon_ms=1_000)
    finals(builder, trade(1, "10", ts_ms=100))
    finals(builder, trade(2, "11", ts_ms=3_100))
    bars, too_late = builder.on_trade(trade(3, "99", ts_ms=900))  # bar end 1000 <= 3100-1000
    assert (bars, too_late) == ([], ["1s"])
    assert builder.late_trades == 1
    bars, too_late = builder.on_trade(trade(4, "98", ts_ms=2_900))  # end 3000 > 2100: revisable
    assert too_late == [] and [(b.ts_open, b.trades) for b in bars] == [(2_000 * MS, 1)]


def test_skip_policy_emits_nothing_for_empty_buckets() -> None:
    builder = one_second()
    finals(builder, trade(1, "10", ts_ms=100))
    bars = finals(builder, trade(2, "11", ts_ms=3_100))
    assert [b.ts_open for b in bars] == [0]


def test_carry_policy_emits_previous_close_bars_for_empty_buckets() -> None:
    builder = one_second(empty="carry", horizon_ms=10_000)
    finals(builder, trade(1, "10", ts_ms=100))
    bars = finals(builder, trade(2, "11", ts_ms=3_100))
    assert [(b.ts_open, b.trades, b.final) for b in bars] == [
        (0, 1, True),
        (1_000 * MS, 0, True),
        (2_000 * MS, 0, True),
    ]
    carried = bars[1]
    assert (carried.open, carried.high, carried.low, carried.close) == ("10",) * 4
    assert (carried.volume, carried.revision) == ("0", 0)
    (revised,) = finals(builder, trade(3, "12", ts_ms=1_500))
    assert (revised.ts_open, revised.open, revised.trades, revised.revision) == (
        1_000 * MS,
        "12",
        1,
        1,
    )


def test_carry_policy_finalises_a_quiet_symbol_bucket_by_bucket() -> None:
    builder = one_second(empty="carry")
    finals(builder, trade(1, "10", ts_ms=100, symbol="BTCUSDT"))
    out = builder.advance(2_500 * MS)
    assert [(b.symbol, b.ts_open, b.trades) for b in out] == [
        ("BTCUSDT", 0, 1),
        ("BTCUSDT", 1_000 * MS, 0),
    ]
    assert [b.ts_open for b in builder.advance(3_000 * MS)] == [2_000 * MS]


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


def test_each_changed_bar_is_emitted_once_per_flush_with_growing_revisions() -> None:
    builder = BarBuilder("binance")
    builder.on_trade(trade(1, "10", ts_ms=100))
    builder.on_trade(trade(2, "11", ts_ms=200))
    first = builder.flush()
    assert [(b.interval, b.final, b.revision) for b in first] == [
        ("1s", False, 2),
        ("1m", False, 2),
    ]
    assert builder.flush() == []  # nothing changed since
    builder.advance(300 * MS)  # time moves, the bars do not change
    assert builder.flush() == []
    builder.on_trade(trade(3, "12", ts_ms=300))
    second = builder.flush()
    assert [(b.interval, b.revision, b.close) for b in second] == [("1s", 3, "12"), ("1m", 3, "12")]


def test_a_bar_finalised_inside_a_batch_is_not_flushed_as_partial() -> None:
    builder = one_second()
    builder.on_trade(trade(1, "10", ts_ms=100))
    done = finals(builder, trade(2, "11", ts_ms=1_100))
    partials = builder.flush()
    assert [b.ts_open for b in done] == [0]
    assert [(b.ts_open, b.final) for b in partials] == [(1_000 * MS, False)]


def test_unknown_empty_policy_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="skip"):
        BarBuilder("binance", empty="fill")


def test_state_round_trips_through_msgpack() -> None:
    def make() -> BarBuilder:
        return BarBuilder("binance", lateness_ns=200 * MS, horizon_ns=2_000 * MS, empty="carry")

    builder = make()
    builder.on_trade(trade(1, "10.10", "0.3", ts_ms=100))
    builder.on_trade(trade(2, "9.90", "0.1", ts_ms=1_700))
    builder.on_trade(trade(3, "1", ts_ms=50))  # a revision of the final 1s bar
    builder.on_trade(trade(4, "2", ts_ms=4_700))
    builder.on_trade(trade(5, "3", ts_ms=60))  # too late for 1s, on time for 1m
    builder.flush()  # a batch ends before the checkpoint
    blob = msgpack.packb(builder.to_state())
    restored = make()
    restored.load_state(msgpack.unpackb(blob, strict_map_key=False))
    assert restored.late_trades == builder.late_trades == 1
    assert restored.to_state() == builder.to_state()
    for nxt in (trade(6, "10.50", "0.6", ts_ms=4_800), trade(7, "11", ts_ms=9_000)):
        assert restored.on_trade(nxt) == builder.on_trade(nxt)
        assert restored.flush() == builder.flush()
    assert restored.to_state() == builder.to_state()
