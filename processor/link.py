"""Read a lane's raw entries and commit its batches with as few Redis round trips as possible.

Reads and commits are fenced (:mod:`processor.wire`): each checks that the lease still names this
member at the moment Redis runs it. A read only takes entries into this member's pending list
when the lease is its own, so a member that was frozen (SIGSTOP, a long GC pause, a socket
timeout) and thaws after another member took the lane over receives nothing; a commit only
writes under the same condition. An idle member waits for new entries with a plain
``XREAD BLOCK`` after the newest id (it claims nothing), then reads them with a fenced read.

On a plain client (one connection pool: TCP, TLS or unix socket) a lane's commands are written
as pre-encoded RESP on one connection it holds while it owns the lane, without waiting for
replies: the read of the next batch goes out before the member processes the current one, and
the commit goes out right after, so Redis works while the member computes (:class:`Pipe`). A
cluster client (no single pool) goes through redis-py with the same scripts (``EVALSHA``, by
the seam :class:`common.redis_link.RedisLink`), one command at a time. Where the server refuses
``EVAL`` (an ACL without scripting), the seam says so once and reads and commits fall back to
``WATCH`` lease, ``GET`` lease, ``MULTI`` ... ``EXEC``: the same commands and the same fence in
three round trips.

Entries read but never committed stay pending for this member and are claimed again by whoever
owns the lane next.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.redis_link import (
    Channel,
    Contended,
    RedisLink,
    RedisLost,
    Script,
    ScriptsRefused,
)
from tickpipe.common.resp import encode_command
from tickpipe.common.schema import RawFrame, text_of
from tickpipe.processor.entries import BadEntry
from tickpipe.processor.lanes import Commit, Lane, decode_entries
from tickpipe.processor.wire import (
    COMMIT_SCRIPT,
    LEASE_LOST,
    READ_SCRIPT,
    commit_call,
    decode_flat_entries,
    fenced_read_commands,
    read_call,
    stream_entries,
    xread_args,
)

__all__ = ["Entries", "LeaseLost", "Link", "Pipe"]

log = logging.getLogger("tickpipe.processor")

Entries = list[tuple[str, RawFrame | BadEntry]]
_READ, _COMMIT = Script(READ_SCRIPT), Script(COMMIT_SCRIPT)
#: What falls back to WATCH/MULTI when the ACL refuses scripts (for the seam's one warning).
_DOING = "reading and committing"
_UNREAD = object()


@dataclass(frozen=True)
class _Decoded:
    """The entries of a read that ran through redis-py's WATCH/MULTI path, decoded."""

    entries: Entries


@dataclass(frozen=True)
class _Fenced:
    """The six replies of a pipelined fenced read (:func:`processor.wire.fenced_read_commands`)."""

    replies: list[Any]


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
        #: The one seam to Redis: whether the direct path exists and whether scripts run.
        self.seam = RedisLink(redis, direct=direct, role="processor")

    @property
    def direct(self) -> bool:
        """Tell whether lanes send pre-encoded commands on held connections."""
        return self.seam.direct

    def pipe(self, lane: Lane) -> Pipe:
        """Return the ordered command pipe of ``lane`` (an async context manager)."""
        return Pipe(self, lane)

    # -- WATCH/MULTI (servers that refuse EVAL), renew and release -------------------------------
    async def _hold(self, pipe: aioredis.client.Pipeline, lane: Lane) -> bool:
        """Start ``pipe``'s ``MULTI`` if this member holds the (watched) lease of ``lane``."""
        if await pipe.get(lane.lease_key) != self.instance_b:
            return False
        pipe.multi()  # type: ignore[no-untyped-call]
        return True

    async def commit_transaction(self, lane: Lane, commit: Commit) -> None:
        """Commit with WATCH lease, GET lease, MULTI ... EXEC; raise :class:`LeaseLost`."""
        try:
            async with self.seam.watch(lane.lease_key) as pipe:
                if not await self._hold(pipe, lane):
                    raise LeaseLost
                for stream, fields in commit.outputs:
                    pipe.xadd(stream, fields)
                pipe.set(lane.checkpoint_key, commit.checkpoint)
                pipe.xack(lane.stream, GROUP_PROCESSOR, *commit.acked)
                pipe.pexpire(lane.lease_key, self.lease_ms)
                await pipe.execute()
        except Contended as exc:
            raise LeaseLost from exc

    async def holds(self, lane: Lane) -> bool:
        """Tell whether the lease of ``lane`` names this member now."""
        value: Any = await self.redis.get(lane.lease_key)
        return bool(value == self.instance_b)

    async def read_transaction(self, lane: Lane, cursor: str, count: int) -> tuple[Entries, str]:
        """Read with WATCH lease, GET lease, MULTI XREADGROUP XREVRANGE EXEC.

        Return the entries and the newest entry id; raise :class:`LeaseLost`.
        """
        try:
            async with self.seam.watch(lane.lease_key) as pipe:
                if not await self._hold(pipe, lane):
                    raise LeaseLost
                pipe.xreadgroup(GROUP_PROCESSOR, self.instance, {lane.stream: cursor}, count=count)
                pipe.xrevrange(lane.stream, count=1)
                reply, newest = await pipe.execute()
        except Contended as exc:
            raise LeaseLost from exc
        newest_id = text_of(newest[0][0]) if newest else "0-0"
        return decode_entries(stream_entries(reply)), newest_id

    async def renew(self, lane: Lane) -> bool:
        """Extend the lease if this member holds it; return whether it does."""
        try:
            async with self.seam.watch(lane.lease_key) as pipe:
                if not await self._hold(pipe, lane):
                    return False
                pipe.pexpire(lane.lease_key, self.lease_ms)
                await pipe.execute()
        except Contended:
            return False
        return True

    async def release(self, lane: Lane, errors: tuple[type[BaseException], ...]) -> None:
        """Delete the lease if this member holds it; log (not raise) ``errors``."""
        try:
            async with self.seam.watch(lane.lease_key) as pipe:
                if await self._hold(pipe, lane):
                    pipe.delete(lane.lease_key)
                    await pipe.execute()
                    log.info("lease released", extra={"lane": lane.name})
        except Contended as exc:
            log.warning("lease not released: %s", exc, extra={"lane": lane.name})
        except errors as exc:
            log.warning("lease not released: %s", exc, extra={"lane": lane.name})


@dataclass
class _Sent:
    """A command whose reply is still to be collected: a read, a wait, or a commit."""

    kind: str  # "read" | "wait" | "commit"
    commit: Commit | None = None
    sent_at: float = 0.0
    reply: Any = _UNREAD  # set at once where the command ran through redis-py
    read: tuple[str, int] = ("", 0)  # a read's cursor and count


class Pipe:
    """One lane's reads and commits, sent without waiting; their replies are collected in order.

    On a direct connection the commands queue on one connection held while the lane is owned,
    so Redis runs a commit and the next read while the member processes the batch after;
    through redis-py each command runs when it is sent. A commit is only ever sent once the
    previous one is confirmed (:meth:`collect`), so a failed commit stops the lane before any
    later batch is written. Leaving the context with replies unread closes the connection.

    After :meth:`collect`, :attr:`newest` is the stream's newest entry id when the last read
    found nothing (the id to wait after), and :attr:`woken` tells whether a wait saw a new entry.
    """

    def __init__(self, link: Link, lane: Lane) -> None:
        self.link = link
        self.lane = lane
        self._channel: Channel | None = link.seam.channel() if link.direct else None
        self._sent: deque[_Sent] = deque()
        #: The encoded fenced read of new entries (cursor ``>``), by count: the same every batch.
        self._new_reads: dict[int, bytes] = {}
        self.newest = "0-0"
        self.woken = False

    @property
    def busy(self) -> bool:
        """Tell whether a command was sent whose reply is not collected yet."""
        return bool(self._sent)

    async def __aenter__(self) -> Pipe:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        unread = bool(self._sent)
        self._sent.clear()
        channel = self._channel
        if channel is not None:
            if exc_type is not None or unread:
                await channel.discard()
            else:
                await channel.release()

    async def _send(self, payload: bytes) -> None:
        assert self._channel is not None
        await self._channel.send(payload)

    async def send_read(self, cursor: str, count: int) -> None:
        """Read up to ``count`` entries after ``cursor`` (``>``: new ones), fenced by the lease."""
        link, lane = self.link, self.lane
        sent = _Sent("read", read=(cursor, count))
        if not link.seam.scripted:
            sent.reply = _Decoded(await self._read_transaction(cursor, count))
        elif link.direct:
            payload = self._new_reads.get(count) if cursor == ">" else None
            if payload is None:
                commands = fenced_read_commands(
                    lease_key=lane.lease_key,
                    fence_key=lane.fence_key,
                    stream=lane.stream,
                    group=GROUP_PROCESSOR,
                    instance=link.instance,
                    cursor=cursor,
                    count=count,
                )
                payload = b"".join(encode_command(c) for c in commands)
                if cursor == ">":
                    self._new_reads[count] = payload
            await self._send(payload)
        else:
            keys, args = read_call(
                lease_key=lane.lease_key,
                stream=lane.stream,
                group=GROUP_PROCESSOR,
                instance=link.instance,
                cursor=cursor,
                count=count,
            )
            try:
                sent.reply = await link.seam.call_script(_READ, keys, args, doing=_DOING)
            except ScriptsRefused:
                sent.reply = _Decoded(await self._read_transaction(cursor, count))
            except rexc.ResponseError as exc:
                sent.reply = exc
        self._sent.append(sent)

    async def send_wait(self, after_id: str, block_ms: int) -> None:
        """Wait up to ``block_ms`` for an entry after ``after_id`` (``XREAD BLOCK``, no claim)."""
        link, stream = self.link, self.lane.stream
        sent = _Sent("wait")
        if link.direct:
            await self._send(encode_command(xread_args(stream, after_id, block_ms)))
        else:
            try:
                sent.reply = await link.redis.xread({stream: after_id}, count=1, block=block_ms)
            except rexc.ResponseError as exc:
                sent.reply = exc
        self._sent.append(sent)

    async def send_commit(self, commit: Commit, sent_at: float) -> None:
        """Write ``commit`` fenced by the lease (confirmed by a later :meth:`collect`)."""
        link, lane = self.link, self.lane
        sent = _Sent("commit", commit, sent_at)
        if not link.seam.scripted:
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
        if link.direct:
            await self._send(_COMMIT.eval(keys, args))
        else:
            try:
                sent.reply = await link.seam.call_script(_COMMIT, keys, args, doing=_DOING)
            except ScriptsRefused:
                await link.commit_transaction(lane, commit)
                sent.reply = 1
            except rexc.ResponseError as exc:
                sent.reply = exc
        self._sent.append(sent)

    async def collect(self) -> tuple[Entries | None, list[tuple[Commit, float]]]:
        """Collect every reply sent for; return the entries read and the commits confirmed.

        The entries are ``None`` when no read was collected, and empty when a read found
        nothing. Raises :class:`LeaseLost` for a read or commit refused by the fence, and the
        error of a command Redis refused.
        """
        entries: Entries | None = None
        confirmed: list[tuple[Commit, float]] = []
        while self._sent:
            sent = self._sent[0]
            reply = sent.reply
            if reply is _UNREAD:
                reply = await self._read_replies(6 if sent.kind == "read" else 1)
            self._sent.popleft()
            if sent.kind == "read":
                entries = await self._settle_read(sent, reply)
            elif sent.kind == "wait":
                if isinstance(reply, Exception):
                    raise reply
                self.woken = bool(reply)
            else:
                assert sent.commit is not None
                await self._settle(sent.commit, reply)
                confirmed.append((sent.commit, sent.sent_at))
        return entries, confirmed

    async def _read_replies(self, count: int) -> Any:
        """Read ``count`` replies off the held connection; one is returned as it is.

        Redis answers a fenced read's six commands at once, so one deadline (the connection's
        ``socket_timeout``) covers them all rather than a timer armed per reply, a share of the
        processor's CPU per batch when batches are small. Past it the connection is discarded
        and :class:`RedisLost` raised, as a reply timed out on its own would.
        """
        channel = self._channel
        assert channel is not None
        if count == 1:
            return (await channel.replies(1))[0]
        timeout_s = getattr(channel.connection, "socket_timeout", None)
        try:
            replies = await channel.replies(count, timeout_s=timeout_s or None)
        except TimeoutError as exc:
            await channel.discard()
            raise RedisLost(f"Redis did not answer a read within {timeout_s} s") from exc
        return _Fenced(replies)

    async def _read_transaction(self, cursor: str, count: int) -> Entries:
        entries, self.newest = await self.link.read_transaction(self.lane, cursor, count)
        return entries

    async def _settle_read(self, sent: _Sent, reply: Any) -> Entries:
        if isinstance(reply, _Decoded):
            return reply.entries
        if isinstance(reply, _Fenced):
            return await self._settle_fenced(reply.replies)
        if isinstance(reply, rexc.NoPermissionError):
            self._refused(reply)
            return await self._read_transaction(*sent.read)
        if isinstance(reply, Exception):
            raise reply
        if reply == LEASE_LOST:
            raise LeaseLost
        if isinstance(reply, bytes | str):
            self.newest = text_of(reply)
            return []
        return decode_flat_entries(reply)

    async def _settle_fenced(self, replies: list[Any]) -> Entries:
        """Make sense of a pipelined read's six replies (:func:`fenced_read_commands`)."""
        gate, executed = replies[1], replies[5]
        if isinstance(gate, rexc.NoPermissionError):
            # Without the gate nothing fenced the EXEC: check the lease now. If it is still this
            # member's, nobody else held it when the read ran; if not, the entries stay pending
            # here and the next owner claims them and checks them by content.
            self._refused(gate)
            if not await self.link.holds(self.lane):
                log.error(
                    "a read ran without its lease check (EVAL refused) and the lease is gone; "
                    "its entries are left to the next owner",
                    extra={"lane": self.lane.name},
                )
                raise LeaseLost
        elif isinstance(gate, Exception):
            raise gate
        elif gate == LEASE_LOST:
            raise LeaseLost
        if executed is None:
            raise LeaseLost  # the lease changed between the gate and the read
        for reply in (replies[0], replies[2], replies[3], replies[4], executed):
            if isinstance(reply, Exception):
                raise reply
        for reply in executed:
            if isinstance(reply, Exception):
                raise reply
        found, newest = executed
        entries = decode_flat_entries(stream_entries(found))
        if not entries:
            self.newest = text_of(newest[0][0]) if newest else "0-0"
        return entries

    def _refused(self, reply: Exception) -> None:
        self.link.seam.refuse_scripts(reply, _DOING)

    async def _settle(self, commit: Commit, reply: Any) -> None:
        link, lane = self.link, self.lane
        if isinstance(reply, rexc.NoPermissionError):
            self._refused(reply)
            await link.commit_transaction(lane, commit)
            return
        if isinstance(reply, Exception):
            raise reply
        if reply == LEASE_LOST:
            raise LeaseLost
