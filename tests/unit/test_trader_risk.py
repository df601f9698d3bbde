"""Unit tests of the trader's risk limits: position, notional, rate, kill switch, breach cancels."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.builders import build_signal
from tickpipe.common.schema import Signal
from tickpipe.trader.risk import RiskLimits, TokenBucket, WorkingOrder, breach_cancels, check_signal

S = 1_000_000_000


def make_signal(**overrides: Any) -> Signal:
    fields: dict[str, Any] = {"signal_id": "threshold:BTCUSDT:1:up", "qty": "0.4", "price": "100"}
    return build_signal(**(fields | {"ts_event": 1, "ts_recv": 2, "ts_signal": 3} | overrides))


LIMITS = RiskLimits(max_position=Decimal("1"), max_notional=Decimal("50"))


def test_an_order_within_every_limit_passes() -> None:
    assert check_signal(make_signal(), LIMITS, position=Decimal("0.5")) is None


def test_position_limit_counts_the_position_and_working_orders() -> None:
    working = [WorkingOrder("tp-a", "BTCUSDT", "buy", Decimal("0.3"))]
    assert check_signal(make_signal(), LIMITS, position=Decimal("0.2"), working=working) is None
    reason = check_signal(make_signal(), LIMITS, position=Decimal("0.4"), working=working)
    assert reason is not None and "position limit" in reason and "1.1" in reason
    # Another symbol's working orders do not count.
    other = [WorkingOrder("tp-b", "ETHUSDT", "buy", Decimal("5"))]
    assert check_signal(make_signal(), LIMITS, position=Decimal("0.4"), working=other) is None


def test_an_order_that_reduces_a_position_past_the_limit_passes() -> None:
    sell = make_signal(side="sell", qty="0.5")
    assert check_signal(sell, LIMITS, position=Decimal("1.8")) is None
    short = make_signal(side="sell", qty="0.5")
    reason = check_signal(short, LIMITS, position=Decimal("-0.8"))
    assert reason is not None and "-1.3" in reason


@pytest.mark.parametrize(
    ("signal", "price", "words"),
    [
        (make_signal(qty="0.6"), None, "notional limit: 60 exceeds 50"),
        (make_signal(price=""), None, "no price"),
        (make_signal(price="", qty="0.1"), Decimal("600"), "notional limit: 60 exceeds"),
    ],
)
def test_notional_limit_values_the_order(signal: Signal, price: Decimal | None, words: str) -> None:
    reason = check_signal(signal, LIMITS, price=price)
    assert reason is not None and words in reason


def test_kill_switch_refuses_everything() -> None:
    assert check_signal(make_signal(), LIMITS, kill_switch=True) == "kill switch is on"


def test_breach_cancels_only_orders_that_grow_the_position() -> None:
    working = [
        WorkingOrder("tp-buy", "BTCUSDT", "buy", Decimal("0.1")),
        WorkingOrder("tp-sell", "BTCUSDT", "sell", Decimal("0.1")),
        WorkingOrder("tp-eth", "ETHUSDT", "buy", Decimal("0.1")),
    ]
    assert breach_cancels("BTCUSDT", Decimal("1"), working, LIMITS) == ["tp-buy"]
    assert breach_cancels("BTCUSDT", Decimal("-1.2"), working, LIMITS) == ["tp-sell"]
    assert breach_cancels("BTCUSDT", Decimal("0.9"), working, LIMITS) == []
    assert breach_cancels("BTCUSDT", Decimal("5"), working, RiskLimits()) == []


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(2.0)
    assert [bucket.take(0) for _ in range(3)] == [True, True, False]
    assert bucket.wait_s(0) == pytest.approx(0.5)
    assert bucket.take(S // 2)  # half a second buys one token
    assert not bucket.take(S // 2)
    assert bucket.take(10 * S) and bucket.take(10 * S) and not bucket.take(10 * S)  # burst cap
    assert TokenBucket(0.5).take(0)  # a rate below one still allows one at once
    with pytest.raises(ValueError):
        TokenBucket(0)
