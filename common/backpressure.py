"""Report Redis refusing a stage's commands: one warning, reminders, the all-clear, figures.

A loop that meets "Redis cannot take this now" (:func:`common.redis_io.is_redis_down`: out of
memory, busy, loading, read-only, unreachable...) keeps what it holds, waits and retries. A
:class:`RedisOutage` per loop makes that visible without flooding the log: the first failure
logs one warning quoting the server's own text (``OOM command not allowed when used memory >
'maxmemory'.``); while it lasts, one more line when the condition changes or every ``remind_s``
(with how long and how many retries); the first success after it logs how long it lasted. A
condition told about less than ``remind_s`` ago is only counted, even across short recoveries,
so Redis hovering at ``maxmemory`` costs one line per ``remind_s``, not one per retry.

Every outage also counts in the process's :class:`RedisFigures`, which the health record
carries (:class:`common.health.HealthReporter`): ``redis_condition`` names what is going on now
(``OOM``, ``BUSY``, ``UNREACHABLE``...; empty when Redis takes everything) and
``redis_retries`` counts the failed attempts per condition since the start.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from common.redis_io import redis_condition, redis_reason

__all__ = ["PROCESS_FIGURES", "RedisFigures", "RedisOutage"]

#: Seconds between two reminders while an outage lasts.
REMIND_S = 30.0


class RedisFigures:
    """What one process saw of Redis: the conditions going on now and retries per condition."""

    def __init__(self) -> None:
        self.retries: Counter[str] = Counter()
        self.active: dict[int, str] = {}  # id of a RedisOutage -> its condition

    def snapshot(self) -> dict[str, Any]:
        """Return the figures for a health record."""
        return {
            "redis_condition": ",".join(sorted(set(self.active.values()))),
            "redis_retries": dict(self.retries),
        }


#: The figures of this process, shared by every :class:`RedisOutage` unless told otherwise.
PROCESS_FIGURES = RedisFigures()


class RedisOutage:
    """Follow one loop's failed Redis attempts; log them rate-limited and count them."""

    def __init__(
        self,
        logger: logging.Logger,
        where: str,
        *,
        figures: RedisFigures | None = None,
        remind_s: float = REMIND_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.where = where
        self.figures = figures if figures is not None else PROCESS_FIGURES
        self.remind_s = remind_s
        self.monotonic = monotonic
        self.started: float | None = None
        self.condition = ""
        self.reason = ""
        self.retries = 0  # failed attempts of the outage going on
        self.outages = 0
        self._announced = False  # this outage was logged
        self._told = ""  # the condition logged last ...
        self._told_at = float("-inf")  # ... and when

    @property
    def active(self) -> bool:
        return self.started is not None

    def failed(self, exc: BaseException) -> str:
        """Count a failed attempt; log it when its condition is new or a reminder is due."""
        now = self.monotonic()
        condition = redis_condition(exc)
        reason = redis_reason(exc)
        self.figures.retries[condition] += 1
        self.figures.active[id(self)] = condition
        self.retries += 1
        if self.started is None:
            self.started = now
            self.outages += 1
            self._announced = False
        # A condition already told about within ``remind_s`` is only counted, so an outage that
        # comes and goes (Redis right at maxmemory) does not flood the log either.
        if condition != self._told or now - self._told_at >= self.remind_s:
            extra = {"where": self.where, "condition": condition, "retries": self.retries}
            if self._announced:
                self.log.warning(
                    "%s: still waiting for Redis after %.0f s and %d retries: %s",
                    self.where,
                    now - self.started,
                    self.retries,
                    reason,
                    extra=extra,
                )
            else:
                self.log.warning(
                    "%s: Redis cannot take it now, waiting and retrying: %s",
                    self.where,
                    reason,
                    extra=extra,
                )
            self._announced = True
            self._told, self._told_at = condition, now
        self.condition, self.reason = condition, reason
        return reason

    def recovered(self) -> float | None:
        """Note a success; after an outage return how long it lasted (seconds), and log it if
        the outage was logged."""
        if self.started is None:
            return None
        lasted_s = self.monotonic() - self.started
        if self._announced:
            self.log.warning(
                "%s: Redis takes commands again after %.1f s and %d retries (was %s)",
                self.where,
                lasted_s,
                self.retries,
                self.condition,
                extra={
                    "where": self.where,
                    "condition": self.condition,
                    "outage_s": round(lasted_s, 3),
                    "retries": self.retries,
                },
            )
        self.started = None
        self.retries = 0
        self.condition = self.reason = ""
        self.figures.active.pop(id(self), None)
        return lasted_s

    def forget(self) -> None:
        """Stop counting this loop's outage as going on (the loop ended)."""
        self.figures.active.pop(id(self), None)

    def __enter__(self) -> RedisOutage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.forget()
