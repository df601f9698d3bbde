"""Tell when the US stock market trades, as Alpaca's clock and calendar report it (pure).

The regular session runs 09:30-16:00 America/New_York on weekdays, 13:00 on early-close days,
and not on the exchange holidays (NYSE's published lists for 2025-2027; other years count
every weekday as a full session). Alpaca's ``GET /v2/clock`` answers ``timestamp``,
``is_open``, ``next_open`` and ``next_close`` with the New York offset; ``GET /v2/calendar``
one entry per trading day with ``open``/``close`` (``HH:MM``), ``session_open``/``session_close``
(the 04:00-20:00 extended session, ``HHMM``) and ``settlement_date`` (T+1 trading days).

Outside the regular session, two more windows matter (Alpaca, "Extended Hours Trading": the
pre-market 04:00-09:30 and the after-hours 16:00-20:00, 17:00 on early-close days): an order
with ``extended_hours`` may work in them (:func:`in_extended_hours`). Stock trades print in
IEX's hours (IEX Exchange, "Trading Hours": pre-market 08:00-09:30, post-market to one hour after
the close), which the mock uses for both of its stock feeds (:func:`prints_now`).
Time comes in as integer nanoseconds.
"""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tickpipe.common.units import NS_PER_S

__all__ = [
    "NEW_YORK",
    "Session",
    "calendar",
    "clock",
    "in_extended_hours",
    "is_open",
    "prints_now",
    "session_of",
]

NEW_YORK = ZoneInfo("America/New_York")
_OPEN, _CLOSE, _EARLY_CLOSE = datetime.time(9, 30), datetime.time(16, 0), datetime.time(13, 0)
_EXTENDED_OPEN, _PRINTS_OPEN = datetime.time(4, 0), datetime.time(8, 0)
_EXTENDED_CLOSE, _EARLY_EXTENDED_CLOSE = datetime.time(20, 0), datetime.time(17, 0)
_HOLIDAYS = {
    datetime.date.fromisoformat(d)
    for d in (
        # NYSE holidays, https://www.nyse.com/markets/hours-calendars
        "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26",
        "2025-06-19", "2025-07-04", "2025-09-01", "2025-11-27", "2025-12-25",
        "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19",
        "2026-07-03", "2026-09-07", "2026-11-26", "2026-12-25",
        "2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18",
        "2027-07-05", "2027-09-06", "2027-11-25", "2027-12-24",
    )
}  # fmt: skip
_EARLY_CLOSES = {
    datetime.date.fromisoformat(d)
    for d in ("2025-07-03", "2025-11-28", "2025-12-24", "2026-11-27", "2026-12-24", "2027-11-26")
}


class Session(tuple[datetime.datetime, datetime.datetime]):
    """One trading day's regular session: (open, close) as New York datetimes."""

    @property
    def open(self) -> datetime.datetime:
        return self[0]

    @property
    def close(self) -> datetime.datetime:
        return self[1]


def _is_trading_day(day: datetime.date) -> bool:
    return day.weekday() < 5 and day not in _HOLIDAYS


def session_of(day: datetime.date) -> Session | None:
    """Return the regular session of ``day``, or None if the market is closed all day."""
    if not _is_trading_day(day):
        return None
    close = _EARLY_CLOSE if day in _EARLY_CLOSES else _CLOSE
    return Session(
        (
            datetime.datetime.combine(day, _OPEN, NEW_YORK),
            datetime.datetime.combine(day, close, NEW_YORK),
        )
    )


def _local(now_ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now_ns / NS_PER_S, NEW_YORK)


def is_open(now_ns: int) -> bool:
    """Tell whether the regular session is open at ``now_ns``."""
    now = _local(now_ns)
    session = session_of(now.date())
    return session is not None and session.open <= now < session.close


def in_extended_hours(now_ns: int) -> bool:
    """Tell whether an ``extended_hours`` order may work at ``now_ns`` (04:00 to 20:00)."""
    now = _local(now_ns)
    session = session_of(now.date())
    if session is None:
        return False
    early = now.date() in _EARLY_CLOSES
    start = datetime.datetime.combine(now.date(), _EXTENDED_OPEN, NEW_YORK)
    end = datetime.datetime.combine(
        now.date(), _EARLY_EXTENDED_CLOSE if early else _EXTENDED_CLOSE, NEW_YORK
    )
    return start <= now < end


def prints_now(now_ns: int) -> bool:
    """Tell whether stocks print trades at ``now_ns`` (08:00 to an hour after the close)."""
    now = _local(now_ns)
    session = session_of(now.date())
    if session is None:
        return False
    start = datetime.datetime.combine(now.date(), _PRINTS_OPEN, NEW_YORK)
    return start <= now < session.close + datetime.timedelta(hours=1)


def _next_session(after: datetime.datetime) -> Session:
    day = after.date()
    for _ in range(20):
        session = session_of(day)
        if session is not None and session.close > after:
            return session
        day += datetime.timedelta(days=1)
    raise AssertionError("no trading day within 20 days")  # pragma: no cover


def next_open_ns(now_ns: int) -> int:
    """Return when the next regular session opens (``now_ns`` itself while open)."""
    if is_open(now_ns):
        return now_ns
    now = _local(now_ns)
    session = _next_session(now)
    if session.open <= now:  # only during a session, handled above
        session = _next_session(session.close)  # pragma: no cover
    return int(session.open.timestamp()) * NS_PER_S


def close_ns(now_ns: int) -> int:
    """Return when the current (or next) regular session closes."""
    return int(_next_session(_local(now_ns)).close.timestamp()) * NS_PER_S


def _iso(moment: datetime.datetime) -> str:
    text = moment.isoformat(timespec="milliseconds")
    return text


def clock(now_ns: int) -> dict[str, Any]:
    """Answer ``GET /v2/clock``."""
    now = _local(now_ns)
    session = _next_session(now)
    open_now = session.open <= now < session.close
    next_open = _next_session(session.close) if open_now else session
    return {
        "timestamp": _iso(now),
        "is_open": open_now,
        "next_open": _iso(next_open.open),
        "next_close": _iso(session.close),
    }


def calendar(start: datetime.date, end: datetime.date) -> list[dict[str, Any]]:
    """Answer ``GET /v2/calendar``: every trading day from ``start`` to ``end`` inclusive."""
    out = []
    day = start
    while day <= end:
        session = session_of(day)
        if session is not None:
            settle = day + datetime.timedelta(days=1)
            while not _is_trading_day(settle):
                settle += datetime.timedelta(days=1)
            out.append(
                {
                    "date": day.isoformat(),
                    "open": session.open.strftime("%H:%M"),
                    "close": session.close.strftime("%H:%M"),
                    "session_open": "0400",
                    "session_close": "2000",
                    "settlement_date": settle.isoformat(),
                }
            )
        day += datetime.timedelta(days=1)
    return out
