"""Every Binance parser checks a decimal string by one rule: finite, non-negative if unsigned."""

from __future__ import annotations

import pytest

from tickpipe.common.errors import DecodeError
from tickpipe.venues.binance.candles import decimal_field
from tickpipe.venues.binance.marketdata import parse_depth_diff
from tickpipe.venues.binance.wire import decimal_text

NOT_DECIMALS = ["1_000", "inf", "-inf", "nan", "", "abc"]


@pytest.mark.parametrize("text", NOT_DECIMALS)
@pytest.mark.parametrize("signed", [False, True])
def test_a_kline_ticker_or_balance_field_refuses_what_no_venue_decimal_is(
    text: str, signed: bool
) -> None:
    """Klines, tickers and balances accepted 1_000 (and a signed nan) that depth refused."""
    with pytest.raises(DecodeError):
        decimal_field({"d": text}, "d", "balanceUpdate", signed=signed)


@pytest.mark.parametrize("text", ["0", "0.00100000", "61800.01", "1e-8"])
def test_the_rule_keeps_a_decimal_as_sent(text: str) -> None:
    assert decimal_field({"v": text}, "v", "kline") == text
    assert decimal_text(text, "trade price") == text
    assert decimal_text("-" + text, "balance delta", signed=True) == "-" + text


def test_depth_and_klines_answer_alike() -> None:
    """The depth parser and the kline parser refuse the same text with the same kind of error."""
    diff = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2,
            "b": [["1_000", "1"]], "a": []}  # fmt: skip
    with pytest.raises(DecodeError, match="finite, non-negative decimal"):
        parse_depth_diff(diff, ts_recv=1, entry_id="1-0")
    with pytest.raises(DecodeError, match="finite, non-negative decimal"):
        decimal_field({"o": "1_000"}, "o", "kline")
