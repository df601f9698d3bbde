"""Fuzz the Binance parsers with damaged real frames: a DecodeError with a reason, nothing else."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.fuzz_frames import (
    ANY_VALUES,
    BAD_NUMBERS,
    damaged_frames,
    execution_report,
    fuzz_settings,
    real_trade_frames,
)
from tickpipe.common.errors import DecodeError
from tickpipe.venues.binance import wire as binance

FUZZ = fuzz_settings(300)


def _valid_number(text: str, *, positive: bool) -> bool:
    value = Decimal(text)
    return value.is_finite() and (value > 0 if positive else value >= 0)


@FUZZ
@given(damaged_frames(real_trade_frames()))
def test_unwrap_and_parse_trade_raise_only_decode_errors(frame: str | bytes) -> None:
    try:
        _, payload = binance.unwrap(frame)
        trade = binance.parse_trade(payload, ts_recv=1, src="1-0")
    except DecodeError as exc:
        assert str(exc)  # one clear message
        return
    # Whatever passed is a sound trade.
    assert _valid_number(trade.price, positive=True)
    assert _valid_number(trade.qty, positive=False)
    assert trade.symbol and int(trade.trade_id) == int(trade.trade_id)


@pytest.mark.parametrize("field", ["p", "q"])
@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_every_bad_price_or_quantity_is_refused(field: str, bad: Any) -> None:
    frame = orjson.loads(real_trade_frames()[0])
    frame["data"][field] = bad
    _, payload = binance.unwrap(orjson.dumps(frame))
    with pytest.raises(DecodeError, match=r"price|quantity|trade"):
        binance.parse_trade(payload, ts_recv=1)


def test_a_zero_price_is_refused_and_a_zero_quantity_is_not() -> None:
    frame = orjson.loads(real_trade_frames()[0])["data"]
    with pytest.raises(DecodeError, match="positive"):
        binance.parse_trade({**frame, "p": "0.00000000"}, ts_recv=1)
    assert binance.parse_trade({**frame, "q": "0.00000000"}, ts_recv=1).qty == "0.00000000"


@FUZZ
@given(
    st.sampled_from(sorted(execution_report())),
    st.one_of(st.none(), st.sampled_from(ANY_VALUES)),
)
def test_execution_report_with_a_field_deleted_or_swapped(key: str, value: Any) -> None:
    data = dict(execution_report())
    if value is None:
        del data[key]
    else:
        data[key] = value
    try:
        update = binance.parse_execution_report(data, ts_recv=1)
    except DecodeError as exc:
        assert str(exc)
        return
    except (ValueError, TypeError) as exc:  # the processor's private lane turns these into
        assert str(exc) or isinstance(exc, TypeError)  # dead letters; see test_fuzz_processor
        return
    assert isinstance(update.client_order_id, str) and update.venue == "binance"


@FUZZ
@given(st.binary(max_size=4096))
def test_unwrap_of_any_bytes(blob: bytes) -> None:
    try:
        binance.unwrap(blob)
    except DecodeError as exc:
        assert "JSON" in str(exc)


def test_deeply_nested_and_huge_frames_are_refused_or_parsed_quickly() -> None:
    with pytest.raises(DecodeError):
        binance.unwrap("[" * 100_000 + "]" * 100_000)
    huge = real_trade_frames()[0][:-1] + ',"pad":"' + "z" * 8_000_000 + '"}'
    _, payload = binance.unwrap(huge)
    assert binance.parse_trade(payload, ts_recv=1).symbol == "BTCUSDT"
    assert not math.isnan(float(binance.parse_trade(payload, ts_recv=1).price))
