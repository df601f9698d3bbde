"""Write only while this trader holds its lease: every change is one fenced script call.

Every trader write (an ``orders`` entry, an order's state, a position, the working-orders set, a
dead letter, an acknowledgement, a lease renewal) is a :class:`Change`: preconditions
(``GET key`` or ``HGET key field`` must equal a value, ``None`` meaning absent) and writes (Redis
commands on declared keys). :class:`Fence` sends it as one ``EVAL`` of :data:`FENCE_SCRIPT`,
which first checks that the change's lease key holds this trader's token, then the
preconditions, then runs the writes, atomically. A trader that lost its lease writes nothing
(:class:`LeaseLost`); a change whose preconditions no longer hold writes nothing
(:class:`Stale`: the caller reads again and recomputes). Every key of a change carries the lease
key's hash tag, so the call is legal on Redis Cluster.

Where the ACL refuses scripts, the same change runs as ``WATCH`` (lease and checked keys),
``GET``/``HGET``, ``MULTI`` ... ``EXEC`` (three round trips), with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.redis_link import Contended, RedisLink, Script, ScriptsRefused
from tickpipe.common.schema import text_of

__all__ = [
    "FENCE_SCRIPT",
    "Change",
    "Fence",
    "LeaseLost",
    "Stale",
    "encode_change",
]

log = logging.getLogger("tickpipe.trader")

#: ``KEYS[1]`` the lease, then the keys the change touches; ``ARGV[1]`` this trader's token,
#: ``ARGV[2]`` the change as JSON ``[[[op, key index, field, expected or false], ...],
#: [[command, key index, args...], ...]]``. Answers 1 (written), 0 (not the lease holder) or
#: ``-i`` (precondition ``i`` failed; nothing written).
FENCE_SCRIPT = """\
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local change = cjson.decode(ARGV[2])
for i, check in ipairs(change[1]) do
  local now
  if check[1] == 'HGET' then
    now = redis.call('HGET', KEYS[check[2]], check[3])
  else
    now = redis.call('GET', KEYS[check[2]])
  end
  if now ~= check[4] then
    return -i
  end
end
for _, write in ipairs(change[2]) do
  redis.call(write[1], KEYS[write[2]], unpack(write, 3))
end
return 1
"""
_FENCE = Script(FENCE_SCRIPT)
FENCE_SHA = _FENCE.sha


class LeaseLost(Exception):
    """This trader does not hold the lease (any more): it must not write or send anything."""


class Stale(Exception):
    """A precondition of a change no longer holds: read again, recompute, try again."""


@dataclass(frozen=True, slots=True)
class Check:
    """``GET key`` (``field`` empty) or ``HGET key field`` must answer ``expected``."""

    key: str
    field: str
    expected: str | None


@dataclass(slots=True)
class Change:
    """Writes fenced by ``lease`` (a lease key), applied only if every check holds."""

    lease: str
    checks: list[Check] = field(default_factory=list)
    writes: list[tuple[str, ...]] = field(default_factory=list)

    def check(self, key: str, expected: str | None, *, field: str = "") -> Change:
        self.checks.append(Check(key, field, expected))
        return self

    def write(self, command: str, key: str, *args: str) -> Change:
        self.writes.append((command, key, *args))
        return self


def encode_change(change: Change, token: str) -> tuple[list[str], list[str]]:
    """Return the ``KEYS`` and ``ARGV`` of :data:`FENCE_SCRIPT` for ``change`` (pure)."""
    keys = [change.lease]
    index: dict[str, int] = {change.lease: 1}

    def at(key: str) -> int:
        if key not in index:
            keys.append(key)
            index[key] = len(keys)
        return index[key]

    checks: list[list[Any]] = [
        [
            "HGET" if c.field else "GET",
            at(c.key),
            c.field,
            False if c.expected is None else c.expected,
        ]
        for c in change.checks
    ]
    writes: list[list[Any]] = [[cmd, at(key), *args] for cmd, key, *args in change.writes]
    return keys, [token, orjson.dumps([checks, writes]).decode()]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return text_of(value)


class Fence:
    """Apply :class:`Change` values for the holder of ``token`` (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, token: str) -> None:
        self.redis = redis
        self.token = token
        #: The trader's one seam to Redis: it decides script or WATCH/MULTI for the fence and
        #: for the intent record (:class:`~trader.intents.IntentRecorder` shares it).
        self.link = RedisLink(redis, role="trader")

    async def apply(self, change: Change) -> None:
        """Write ``change``; raise :class:`LeaseLost` or :class:`Stale` if it was not written."""
        if self.link.scripted:
            keys, args = encode_change(change, self.token)
            try:
                reply = await self.link.call_script(
                    _FENCE, keys, args, doing="fencing trader writes", held=False
                )
            except ScriptsRefused:
                pass
            else:
                if reply == 0:
                    raise LeaseLost(f"{change.lease} is not held by {self.token}")
                if reply != 1:
                    raise Stale(f"precondition {-int(reply)} of the change no longer holds")
                return
        await self._transaction(change)

    async def _transaction(self, change: Change, attempts: int = 3) -> None:
        watched: Sequence[str] = list(
            dict.fromkeys([change.lease, *(c.key for c in change.checks)])
        )
        for _ in range(attempts):
            try:
                async with self.link.watch(*watched) as pipe:
                    if _text(await pipe.get(change.lease)) != self.token:
                        raise LeaseLost(f"{change.lease} is not held by {self.token}")
                    for n, check in enumerate(change.checks, 1):
                        if check.field:
                            now = await pipe.hget(check.key, check.field)
                        else:
                            now = await pipe.get(check.key)
                        if _text(now) != check.expected:
                            raise Stale(f"precondition {n} of the change no longer holds")
                    pipe.multi()
                    for command, key, *args in change.writes:
                        pipe.execute_command(command, key, *args)
                    await pipe.execute()
                    return
            except Contended:
                continue
        raise Stale("the watched keys kept changing")
