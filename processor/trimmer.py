"""Apply the retention policy to a lane's streams in Redis (the I/O half of retention).

:func:`trim_streams` reads each stream's ``XINFO STREAM`` (length, entries ever added, first and
last id) and its consumer groups (``XINFO GROUPS`` and ``XPENDING``), asks
:func:`processor.retention.decide_trim`, and runs ``XTRIM MINID`` (exact). Alarms are collected
in a :class:`Retention` the health record shows.

Finding the id of the entry ``length - maxlen`` from the start would mean reading every entry
before it. Instead each round remembers *marks*: the stream's last id together with how many
entries had been added by then, and its first id with its position. The trim keeps from the
newest mark at or before the first entry the policy keeps, so a stream holds between ``maxlen``
and ``maxlen`` plus one round's appends, and a round costs a few small replies whatever the rate.
A stream with no usable mark yet (one that stopped growing, or the first round after taking a
lane over) falls back to reading up to :data:`TRIM_STEP` entries from its start, which finds the
exact id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from processor.retention import GroupView, decide_trim, maxlen_for

__all__ = ["MAX_MARKS", "TRIM_STEP", "Retention", "trim_streams"]

#: Without a usable mark, at most this many entries are read (and removed) per round.
TRIM_STEP = 10_000
#: Marks kept per stream (older ones are dropped once a newer one is usable).
MAX_MARKS = 64
log = logging.getLogger("tickpipe.processor")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Retention:
    """Trim totals and the streams whose policy is blocked by unread entries."""

    trimmed: int = 0
    blocked: int = 0  # times a trim was held back by unread entries
    alarms: dict[str, str] = field(default_factory=dict)  # stream -> reason
    #: stream -> ``(position, id)`` pairs seen in earlier rounds, oldest first; the position
    #: counts entries ever added to the stream (1 = the first).
    marks: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def first_kept(self, key: str, info: dict[str, Any], maxlen: int) -> str | None:
        """Record this round's marks; return the id to keep from, or ``None`` for no trim."""
        length, added = int(info["length"]), int(info["entries-added"])
        marks = self.marks.setdefault(key, [])
        if marks and marks[-1][0] > added:
            marks.clear()  # the stream was deleted and created again
        first, last = info.get("first-entry"), info.get("last-generated-id")
        if first:
            _add_mark(marks, (added - length + 1, _text(first[0])))
        if last:
            _add_mark(marks, (added, _text(last)))
        keep_from = added - maxlen + 1  # position of the oldest entry the policy keeps
        usable = [m for m in marks if m[0] <= keep_from]
        if length <= maxlen or not usable or usable[-1][0] <= added - length + 1:
            return None  # no mark past the first entry: nothing to gain from the marks
        chosen = usable[-1]
        marks[:] = [m for m in marks if m[0] >= chosen[0]][-MAX_MARKS:]
        return chosen[1]


def _add_mark(marks: list[tuple[int, str]], mark: tuple[int, str]) -> None:
    if mark not in marks:
        marks.append(mark)
        marks.sort()
        del marks[:-MAX_MARKS]  # a stream under its cap gains marks every round: keep the newest


async def _groups(redis: aioredis.Redis, key: str) -> list[GroupView]:
    out = []
    for info in await redis.xinfo_groups(key):
        info = {_text(k): v for k, v in info.items()}
        name = _text(info["name"])
        oldest = None
        if int(info.get("pending", 0)):
            summary: Any = await redis.xpending(key, name)
            if summary and summary.get("min"):
                oldest = _text(summary["min"])
        out.append(GroupView(name, _text(info["last-delivered-id"]), oldest))
    return out


async def trim_streams(
    redis: aioredis.Redis,
    streams: Iterable[tuple[str, str, tuple[str, ...]]],
    policy: Iterable[tuple[str, int]],
    retention: Retention,
) -> None:
    """Trim each ``(kind, key, required groups)`` stream by ``policy`` (kind -> maxlen)."""
    table = dict(policy)
    streams = list(streams)
    async with redis.pipeline(transaction=False) as pipe:  # one round trip for every stream
        for _, key, _ in streams:
            pipe.xinfo_stream(key)
        infos: list[Any] = await pipe.execute(raise_on_error=False)
    for (kind, key, required), raw in zip(streams, infos, strict=True):
        maxlen = maxlen_for(kind, table)
        if isinstance(raw, rexc.ResponseError):  # no such stream (yet)
            retention.alarms.pop(key, None)
            continue
        if isinstance(raw, Exception):
            raise raw
        info = {_text(k): v for k, v in raw.items()}
        length = int(info["length"])
        first_kept = retention.first_kept(key, info, maxlen)
        if length <= maxlen:
            retention.alarms.pop(key, None)
            continue
        if first_kept is None:
            step = min(length - maxlen, TRIM_STEP)
            head: Any = await redis.xrange(key, "-", "+", count=step + 1)
            first_kept = _text(head[step][0]) if len(head) > step else None
        groups = await _groups(redis, key)
        decision = decide_trim(
            length=length, maxlen=maxlen, first_kept=first_kept, groups=groups, required=required
        )
        if decision.minid is not None:
            retention.trimmed += int(
                await redis.xtrim(key, minid=decision.minid, approximate=False)
            )
        if decision.alarm is None:
            retention.alarms.pop(key, None)
            continue
        retention.blocked += 1
        if key not in retention.alarms:
            log.warning("retention held back: %s", decision.alarm, extra={"stream": key})
        retention.alarms[key] = decision.alarm
