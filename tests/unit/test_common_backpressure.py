"""RedisOutage: one warning per outage quoting the server, reminders, the all-clear, figures."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions as rexc
from redis._parsers.base import BaseParser

from tickpipe.common.backpressure import RedisFigures, RedisOutage

OOM = "OOM command not allowed when used memory > 'maxmemory'."
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL."


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def _outage(figures: RedisFigures, clock: Clock) -> RedisOutage:
    return RedisOutage(
        logging.getLogger("tickpipe.test"), "lane x", figures=figures, monotonic=clock
    )


Lane = tuple[RedisFigures, Clock, RedisOutage]


@pytest.fixture
def lane(caplog: pytest.LogCaptureFixture) -> Lane:
    """Return one lane's figures, manual clock and outage, its warnings captured by ``caplog``."""
    caplog.set_level(logging.WARNING, "tickpipe.test")
    figures, clock = RedisFigures(), Clock()
    return figures, clock, _outage(figures, clock)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records]
    caplog.clear()
    return lines


def test_an_outage_is_told_once_then_reminded_then_cleared(
    caplog: pytest.LogCaptureFixture, lane: Lane
) -> None:
    figures, clock, outage = lane
    for _ in range(50):  # many retries within the first 29 s: one line
        outage.failed(BaseParser.parse_error(OOM))
        clock.now_s += 0.5
    assert _said(caplog) == [f"lane x: Redis cannot take it now, waiting and retrying: {OOM}"]
    assert figures.snapshot() == {"redis_condition": "OOM", "redis_retries": {"OOM": 50}}
    clock.now_s += 5.0  # 30 s after the first line: a reminder
    outage.failed(BaseParser.parse_error(OOM))
    assert _said(caplog) == [f"lane x: still waiting for Redis after 30 s and 51 retries: {OOM}"]
    outage.failed(BaseParser.parse_error(BUSY))  # another condition: told at once
    assert _said(caplog) == [f"lane x: still waiting for Redis after 30 s and 52 retries: {BUSY}"]
    clock.now_s += 2.0
    assert outage.recovered() == 32.0
    back = "lane x: Redis takes commands again after 32.0 s and 52 retries (was BUSY)"
    assert _said(caplog) == [back]
    assert outage.recovered() is None and _said(caplog) == []  # nothing to clear
    assert figures.snapshot() == {"redis_condition": "", "redis_retries": {"OOM": 51, "BUSY": 1}}


def test_an_outage_that_comes_and_goes_is_counted_not_repeated(
    caplog: pytest.LogCaptureFixture, lane: Lane
) -> None:
    figures, clock, outage = lane
    for _ in range(20):  # Redis right at maxmemory: refused, accepted, refused...
        outage.failed(BaseParser.parse_error(OOM))
        clock.now_s += 0.5
        outage.recovered()
        clock.now_s += 0.5
    lines = _said(caplog)
    assert len(lines) == 2 and OOM in lines[0] and "takes commands again" in lines[1]
    assert outage.outages == 20 and figures.retries["OOM"] == 20
    clock.now_s += 30.0  # long after the last line: told again
    outage.failed(rexc.ConnectionError("Connection refused."))
    assert _said(caplog) == [
        "lane x: Redis cannot take it now, waiting and retrying: Connection refused."
    ]
    assert figures.snapshot()["redis_condition"] == "UNREACHABLE"


def test_a_loop_that_ends_no_longer_names_its_condition() -> None:
    figures, clock = RedisFigures(), Clock()
    with _outage(figures, clock) as first, _outage(figures, clock) as second:
        first.failed(BaseParser.parse_error(OOM))
        second.failed(BaseParser.parse_error(BUSY))
        assert figures.snapshot()["redis_condition"] == "BUSY,OOM"
    assert figures.snapshot() == {"redis_condition": "", "redis_retries": {"OOM": 1, "BUSY": 1}}
