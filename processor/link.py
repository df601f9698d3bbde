"""Read a lane's raw entries and commit its batches with as few Redis round trips as possible.

A commit is one fenced ``EVAL`` (:mod:`processor.wire`). On a plain client (one connection pool:
TCP, TLS or unix socket) a lane's commands are written as pre-encoded RESP on one connection it
holds while it owns the lane, without waiting for replies: the read of the next batch goes out
before the member processes the current one, and the commit goes out right after, so Redis works
while the member computes (:class:`Pipe`). A cluster client (no single pool) goes through
redis-py with the same script, one command at a time. Where the server refuses ``EVAL`` (an ACL
without scripting), the commit falls back to ``WATCH`` lease, ``GET`` lease, ``MULTI`` ...
``EXEC``: the same writes and the same fencing in three round trips.

Reads are fenced like before: the shell sends one only while this member's lease is fresh (it
stops reading when it could not renew in time). Entries read but never committed stay pending
for this member and are claimed again by whoever owns the lane next.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from common.names import GROUP_PROCESSOR
from common.redis_io import direct_pool
from common.resp import encode_command
from common.schema import RawFrame
from processor.entries import BadEntry
from processor.lanes import Commit, Lane, decode_entries
from processor.wire import (
    COMMIT_SCRIPT,
    LEASE_LOST,
    commit_call,
    decode_flat_entries,
    stream_entries,
    xreadgroup_args,
)

__all__ = ["Entries", "LeaseLost", "Link", "Pipe"]

log = logging.getLogger("tickpipe.processor")

Entries = list[tuple[str, RawFrame | BadEntry]]
_UNREAD = object()


class LeaseLost(Exception):
    """This member no longer holds the lease of a lane."""


class Link:
    """Talk to Redis for the lanes of one member."""

    def __init__(
        self, redis: aioredis.Redis, instance: str, lease_ms: int, *, direct: bool = True
    ) -> None:
        self.redis = redis
        self.instance = instance
        self.instance_b = instance.encode()
        self.lease_ms = lease_ms
        self.pool: Any = direct_pool(redis) if direct else None
        self.scripted = True  # False once the server refused EVAL

    def pipe(self, lane: Lane) -> Pipe:
        """Return the ordered command pipe of ``lane`` (an async context manager)."""
        return Pipe(self, lane)

    # -- WATCH/MULTI (servers that refuse EVAL), renew and release -------------------------------
    async def _hold(self, pipe: aioredis.client.Pipeline, lane: Lane) -> bool:
        """Watch the lane's lease in ``pipe``; start its ``MULTI`` if this member holds it."""
        await pipe.watch(lane.lease_key)
        if await pipe.get(lane.lease_key) != self.instance_b:
            return False
        pipe.multi()  # type: ignore[no-untyped-call]
        return True

    async def commit_transaction(self, lane: Lane, commit: Commit) -> None:
        """Commit with WATCH lease, GET lease, MULTI ... EXEC; raise :class:`LeaseLost`."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                if not await self._hold(pipe, lane):
                    raise LeaseLost
                for stream, fields in commit.outputs:
                    pipe.xadd(stream, fields)  # type: ignore[arg-type]
                pipe.set(lane.checkpoint_key, commit.checkpoint)
                pipe.xack(lane.stream, GROUP_PROCESSOR, *commit.acked)
                pipe.pexpire(lane.lease_key, self.lease_ms)
                await pipe.execute()
            except rexc.WatchError as exc:
                raise LeaseLost from exc

    async def renew(self, lane: Lane) -> bool:
        """Extend the lease if this member holds it; return whether it does."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                if not await self._hold(pipe, lane):
                    return False
                pipe.pexpire(lane.lease_key, self.lease_ms)
                await pipe.execute()
            except rexc.WatchError:
                return False
        return True

    async def release(self, lane: Lane, errors: tuple[type[BaseException], ...]) -> None:
        """Delete the lease if this member holds it; log (not raise) ``errors``."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                if await self._hold(pipe, lane):
                    pipe.delete(lane.lease_key)
                    await pipe.execute()
                    log.info("lease released", extra={"lane": lane.name})
            except rexc.WatchError as exc:
                log.warning("lease not released: %s", exc, extra={"lane": lane.name})
            except errors as exc:
                log.warning("lease not released: %s", exc, extra={"lane": lane.name})


@dataclass
class _Sent:
    """A command whose reply is still to be collected: a read, or a commit."""

    commit: Commit | None
    sent_at: float
    reply: Any = _UNREAD  # set at once where the command ran through redis-py


class Pipe:
    """One lane's reads and commits, sent without waiting; their replies are collected in order.

    On a direct connection the commands queue on one connection held while the lane is owned,
    so Redis runs a commit and the next read while the member processes the batch after;
    through redis-py each command runs when it is sent. A commit is only ever sent once the
    previous one is confirmed (:meth:`collect`), so a failed commit stops the lane before any
    later batch is written. Leaving the context with replies unread closes the connection.
    """

    def __init__(self, link: Link, lane: Lane) -> None:
        self.link = link
        self.lane = lane
        self._conn: Any = None
        self._sent: deque[_Sent] = deque()

    @property
    def busy(self) -> bool:
        """Tell whether a command was sent whose reply is not collected yet."""
        return bool(self._sent)

    async def __aenter__(self) -> Pipe:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, self._conn = self._conn, None
        unread = bool(self._sent)
        self._sent.clear()
        if conn is not None:
            try:
                if exc_type is not None or unread:
                    await conn.disconnect()
            finally:
                await self.link.pool.release(conn)

    async def _send(self, payload: bytes) -> None:
        if self._conn is None:
            self._conn = await self.link.pool.get_connection()
        await self._conn.send_packed_command(payload, check_health=False)

    async def send_read(self, cursor: str, count: int, block_ms: int | None) -> None:
        """Read up to ``count`` entries after ``cursor`` (``>``: new ones) for this member."""
        link, stream = self.link, self.lane.stream
        sent = _Sent(None, 0.0)
        if link.pool is not None:
            args = xreadgroup_args(GROUP_PROCESSOR, link.instance, stream, cursor, count, block_ms)
            await self._send(encode_command(args))
        else:
            try:
                sent.reply = await link.redis.xreadgroup(
                    GROUP_PROCESSOR, link.instance, {stream: cursor}, count=count, block=block_ms
                )
            except rexc.ResponseError as exc:
                sent.reply = exc
        self._sent.append(sent)

    async def send_commit(self, commit: Commit, sent_at: float) -> None:
        """Write ``commit`` fenced by the lease (confirmed by a later :meth:`collect`)."""
        link, lane = self.link, self.lane
        sent = _Sent(commit, sent_at)
        if not link.scripted:
            await link.commit_transaction(lane, commit)
            sent.reply = 1
            self._sent.append(sent)
            return
        keys, args = commit_call(
            lease_key=lane.lease_key,
            checkpoint_key=lane.checkpoint_key,
            stream=lane.stream,
            group=GROUP_PROCESSOR,
            instance=link.instance,
            lease_ms=link.lease_ms,
            commit=commit,
        )
        if link.pool is not None:
            await self._send(encode_command(["EVAL", COMMIT_SCRIPT, str(len(keys)), *keys, *args]))
        else:
            try:
                sent.reply = await link.redis.eval(COMMIT_SCRIPT, len(keys), *keys, *args)
            except rexc.ResponseError as exc:
                sent.reply = exc
        self._sent.append(sent)

    async def collect(self) -> tuple[Entries | None, list[tuple[Commit, float]]]:
        """Collect every reply sent for; return the entries read and the commits confirmed.

        Raises :class:`LeaseLost` for a commit refused by the fence, and the error of a command
        Redis refused.
        """
        entries: Entries | None = None
        confirmed: list[tuple[Commit, float]] = []
        while self._sent:
            sent = self._sent[0]
            reply = sent.reply
            if reply is _UNREAD:
                try:
                    reply = await self._conn.read_response()
                except rexc.ResponseError as exc:
                    reply = exc
            self._sent.popleft()
            if sent.commit is None:
                if isinstance(reply, Exception):
                    raise reply
                entries = self._decode(reply)
                continue
            await self._settle(sent.commit, reply)
            confirmed.append((sent.commit, sent.sent_at))
        return entries, confirmed

    def _decode(self, reply: Any) -> Entries:
        entries = stream_entries(reply)
        if self.link.pool is not None:
            return decode_flat_entries(entries)
        return decode_entries(entries)

    async def _settle(self, commit: Commit, reply: Any) -> None:
        link, lane = self.link, self.lane
        if isinstance(reply, rexc.NoPermissionError):
            log.warning(
                "Redis refused EVAL (%s); committing with WATCH/MULTI from now on "
                "(allow +eval for the processor user to commit in one round trip)",
                reply,
                extra={"lane": lane.name},
            )
            link.scripted = False
            await link.commit_transaction(lane, commit)
            return
        if isinstance(reply, Exception):
            raise reply
        if reply == LEASE_LOST:
            raise LeaseLost
