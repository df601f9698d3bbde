"""Apply the retention policy to a lane's streams in Redis (the I/O half of retention).

:func:`trim_streams` reads each stream's length, the id the length policy would keep from, and
its consumer groups (``XINFO GROUPS`` and ``XPENDING``), asks :func:`processor.retention.
decide_trim`, and runs ``XTRIM MINID`` (exact). Alarms are collected in a :class:`Retention`
the health record shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from processor.retention import GroupView, decide_trim, maxlen_for

__all__ = ["TRIM_STEP", "Retention", "trim_streams"]

#: At most this many entries are removed from one stream per trim round.
TRIM_STEP = 10_000
log = logging.getLogger("tickpipe.processor")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class Retention:
    """Trim totals and the streams whose policy is blocked by unread entries."""

    trimmed: int = 0
    blocked: int = 0  # times a trim was held back by unread entries
    alarms: dict[str, str] = field(default_factory=dict)  # stream -> reason


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
    for kind, key, required in streams:
        maxlen = maxlen_for(kind, table)
        length = int(await redis.xlen(key))
        if length <= maxlen:
            retention.alarms.pop(key, None)
            continue
        excess = min(length - maxlen, TRIM_STEP)
        head: Any = await redis.xrange(key, "-", "+", count=excess + 1)
        first_kept = _text(head[excess][0]) if len(head) > excess else None
        groups = await _groups(redis, key) if await redis.exists(key) else []
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
