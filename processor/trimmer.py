"""Apply the retention policy to a lane's streams in Redis (the I/O half of retention).

:func:`trim_streams` reads each stream's ``XINFO STREAM`` (length, entries ever added, first and
last id) and its consumer groups (``XINFO GROUPS`` and ``XPENDING``) and, for a stream the
archive must see first (its group is required), the archive's watermark key; asks
:func:`processor.retention.decide_trim`, and runs ``XTRIM MINID`` (exact). Alarms are collected
in a :class:`Retention` the health record shows.

Finding the id of the entry ``length - maxlen`` from the start would mean reading every entry
before it. Instead each round remembers *marks*: the stream's last id together with how many
entries had been added by then, and its first id with its position. The trim keeps from the
newest mark at or before the first entry the policy keeps, so a stream holds between ``maxlen``
and ``maxlen`` plus the gap between two marks, and a round costs a few small replies whatever the
rate. At most :data:`MAX_MARKS` marks are kept per stream; past that, the mark whose neighbours
are closest goes, so the marks stay spread over the whole history (a stream that takes many
rounds to reach its cap still has a mark near the position the first trim needs).

A stream with no usable mark yet (one that stopped growing, or the first round after taking a
lane over) falls back to finding the id :data:`TRIM_STEP` entries from its start with a small
script, inside Redis: the reply is that one id, never the entries. (Reading them into the
processor cost tens of MiB per call, and the memory stayed with the process.)
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from tickpipe.common.names import GROUP_ARCHIVE, archive_watermark
from tickpipe.common.schema import text_of
from tickpipe.processor.retention import GroupView, decide_trim, maxlen_for

__all__ = ["MAX_MARKS", "NTH_ID_SCRIPT", "TRIM_STEP", "Retention", "nth_id", "trim_streams"]

#: Without a usable mark, at most this many entries are removed per round.
TRIM_STEP = 2_000
#: Marks kept per stream (older ones are dropped once a newer one is usable).
MAX_MARKS = 64
#: Return the id of entry ARGV[1] (1 = the first) of stream KEYS[1], or nil if it is shorter.
NTH_ID_SCRIPT = """
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
local entry = head[tonumber(ARGV[1])]
if entry then return entry[1] end
return false
"""
log = logging.getLogger("tickpipe.processor")


@dataclass
class Retention:
    """Trim totals and the streams whose policy is blocked by unread entries."""

    trimmed: int = 0
    blocked: int = 0  # times a trim was held back by unread entries
    lookups: int = 0  # times the id to keep from was looked up in Redis (no usable mark)
    alarms: dict[str, str] = field(default_factory=dict)  # stream -> reason
    #: stream -> ``(position, id)`` pairs seen in earlier rounds, oldest first; the position
    #: counts entries ever added to the stream (1 = the first).
    marks: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def first_kept(self, key: str, info: dict[str, Any], maxlen: int) -> tuple[str, str | None]:
        """Record this round's marks; return what to do and the id to keep from.

        ``("under", None)``: the stream is within its cap. ``("mark", id)``: keep from a mark.
        ``("wait", None)``: no mark is usable yet, but one past the first entry will be before the
        stream exceeds its cap by half (skip this round rather than look the id up).
        ``("lookup", None)``: no mark will do (a lane just taken over, a stream that stopped
        growing): find the id in Redis.
        """
        length, added = int(info["length"]), int(info["entries-added"])
        marks = self.marks.setdefault(key, [])
        if marks and marks[-1][0] > added:
            marks.clear()  # the stream was deleted and created again
        first, last = info.get("first-entry"), info.get("last-generated-id")
        start = added - length + 1  # position of the stream's first entry
        if first:
            _add_mark(marks, (start, text_of(first[0])))
        if last:
            _add_mark(marks, (added, text_of(last)))
        if length <= maxlen:
            return "under", None
        keep_from = added - maxlen + 1  # position of the oldest entry the policy keeps
        ahead = [m for m in marks if start < m[0] <= added]  # marks past the first entry
        usable = [m for m in ahead if m[0] <= keep_from]
        if usable:
            chosen = usable[-1]
            marks[:] = [m for m in marks if m[0] >= chosen[0]][-MAX_MARKS:]
            return "mark", chosen[1]
        if ahead and ahead[0][0] - start <= maxlen // 2:
            # Appends vary from round to round, so the next mark is often a little short of
            # ``keep_from``: it becomes usable within a round or two.
            return "wait", None
        return "lookup", None


def _add_mark(marks: list[tuple[int, str]], mark: tuple[int, str]) -> None:
    if mark in marks:
        return
    bisect.insort(marks, mark)
    while len(marks) > MAX_MARKS:  # a stream under its cap gains marks every round
        # Drop the inner mark whose neighbours are closest: the oldest ones are the ones the
        # first trim needs, and the newest is where the next rounds start from.
        n = min(range(1, len(marks) - 1), key=lambda i: marks[i + 1][0] - marks[i - 1][0])
        del marks[n]


async def nth_id(redis: aioredis.Redis, key: str, position: int) -> str | None:
    """Return the id of entry ``position`` (1 = the first) of stream ``key``, found in Redis."""
    found: Any = await redis.eval(NTH_ID_SCRIPT, 1, key, position)
    return None if found is None else text_of(found)


async def _groups(redis: aioredis.Redis, key: str) -> list[GroupView]:
    out = []
    for info in await redis.xinfo_groups(key):
        info = {text_of(k): v for k, v in info.items()}
        name = text_of(info["name"])
        oldest = None
        if int(info.get("pending", 0)):
            summary: Any = await redis.xpending(key, name)
            if summary and summary.get("min"):
                oldest = text_of(summary["min"])
        out.append(GroupView(name, text_of(info["last-delivered-id"]), oldest))
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
        info = {text_of(k): v for k, v in raw.items()}
        length = int(info["length"])
        action, first_kept = retention.first_kept(key, info, maxlen)
        if action == "under":
            retention.alarms.pop(key, None)
            continue
        if action == "wait":  # the alarm, if any, stays as it was
            continue
        if action == "lookup":
            retention.lookups += 1
            first_kept = await nth_id(redis, key, min(length - maxlen, TRIM_STEP) + 1)
        groups = await _groups(redis, key)
        archive_on = GROUP_ARCHIVE in required
        archived: Any = await redis.get(archive_watermark(key)) if archive_on else None
        decision = decide_trim(
            length=length,
            maxlen=maxlen,
            first_kept=first_kept,
            groups=groups,
            required=required,
            archived=None if archived is None else text_of(archived),
            archive_on=archive_on,
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
