"""Unit tests of the Alpaca mock's market calendar, session rules and order ids."""

from __future__ import annotations

import datetime

from tickpipe.mock_ws.alpaca import calendar
from tickpipe.mock_ws.alpaca.broker import AlpacaBroker
from tickpipe.mock_ws.market import MarketSim


def ns(text: str) -> int:
    moment = datetime.datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1_000_000_000


def test_regular_session_holidays_and_early_closes() -> None:
    assert calendar.is_open(ns("2026-01-05T09:30:00-05:00"))
    assert not calendar.is_open(ns("2026-01-05T09:29:59-05:00"))
    assert not calendar.is_open(ns("2026-01-05T16:00:00-05:00"))
    assert not calendar.is_open(ns("2026-01-01T12:00:00-05:00"))  # New Year's Day
    assert calendar.is_open(ns("2026-11-27T12:59:00-05:00"))  # the day after Thanksgiving
    assert not calendar.is_open(ns("2026-11-27T13:00:00-05:00"))  # closes at 13:00
    assert calendar.is_open(ns("2026-07-06T14:00:00-04:00"))  # summer time
    # 23:45 UTC is after the close, the case the mock used to trade through.
    assert not calendar.is_open(ns("2026-01-05T23:45:00+00:00"))


def test_clock_names_the_next_open_over_a_holiday_weekend() -> None:
    answer = calendar.clock(ns("2026-01-16T17:00:00-05:00"))  # Friday after the close
    assert answer["is_open"] is False
    assert answer["next_open"] == "2026-01-20T09:30:00.000-05:00"  # Monday is MLK day
    assert answer["timestamp"] == "2026-01-16T17:00:00.000-05:00"


def test_calendar_settles_one_trading_day_later() -> None:
    days = calendar.calendar(datetime.date(2026, 4, 1), datetime.date(2026, 4, 6))
    assert [(d["date"], d["settlement_date"]) for d in days] == [
        ("2026-04-01", "2026-04-02"),
        ("2026-04-02", "2026-04-06"),  # Good Friday and the weekend in between
        ("2026-04-06", "2026-04-07"),
    ]


def test_order_ids_are_random_across_restarts_of_the_same_seed() -> None:
    body = {"symbol": "FAKEPACA", "qty": "1", "side": "buy", "type": "market",
            "time_in_force": "day"}  # fmt: skip
    ids = []
    for _ in range(2):  # two runs of the mock with the same seed
        sim = MarketSim(["FAKEPACA"], seed=7, trades_per_s=10, start_prices={"FAKEPACA": "134"})
        sim.trades_due(10**18)
        broker = AlpacaBroker(sim, seed=7, hours="always")
        ids.append(broker.submit(body, 10**18)[0]["id"])
        assert broker.account_id == AlpacaBroker(sim, seed=7).account_id  # the account is stable
    assert ids[0] != ids[1]
