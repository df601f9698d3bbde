"""Write queued raw frames to Redis Streams in natural batches, holding them through outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from tickpipe.common.backoff import Backoff
from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.contract import (
    FRAME_SEP,
    RAW_FIELDS,
    RAW_FRAMES,
    RAW_PACK_MAX,
    RawKind,
    raw_entry_frames,
)
from tickpipe.common.errors import DecodeError
from tickpipe.common.raw_resp import CHANNEL_FIELDS, FRAME_FIELDS, channel_values, encode_raw_xadd
from tickpipe.common.redis_io import REDIS_ERRORS, refusal_error
from tickpipe.common.redis_link import Channel, RedisLink, Script
from tickpipe.common.resp import encode_command
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.journal import Journal
from tickpipe.ingestor.lost import WrittenTail

__all__ = [
    "APPEND_SCRIPT",
    "WRITTEN_KEPT",
    "WRITTEN_KEPT_BYTES",
    "BatchWriter",
    "IngestorStats",
    "Item",
    "LostHandler",
    "WriteQueue",
    "encode_append",
    "encode_raw_xadd",
]

log = logging.getLogger("tickpipe.ingestor")

#: One queued entry: the stream to append to and the frame or marker. ``None`` ends the writer.
Item = tuple[str, RawFrame]
WriteQueue = asyncio.Queue[Item | None]
#: Told which frames of a stream Redis lost (and whether none written is left, so that it may
#: have lost even more); returns the markers to write about it.
LostHandler = Callable[[str, list[RawFrame], bool], list[Item]]

#: How many of the frames written last are kept to find what Redis lost after a reconnect...
WRITTEN_KEPT = 20_000
#: ... and at most how many bytes of frame data (REST backfill pages are large).
WRITTEN_KEPT_BYTES = 64 * 1024 * 1024
#: Entries read back per call while looking for the newest frame Redis still holds.
_READ_BACK = 500
#: The kinds of frame that share entries, and at most how much data one entry holds.
PACKABLE_KINDS = (RawKind.WS.value, RawKind.WS_BINARY.value)
RAW_PACK_BYTES = 256 * 1024


@dataclass(slots=True)
class IngestorStats:
    """Counters the ingestor publishes as health (all monotonic except the gauges)."""

    frames_received: int = 0
    batches_written: int = 0
    entries_written: int = 0
    queue_full_waits: int = 0
    connections_up: int = 0
    reconnects: int = 0
    rotations: int = 0
    stale_detected: int = 0
    streams_silent: int = 0
    symbols_quiet: int = 0
    subscriptions_refused: int = 0
    rest_snapshots: int = 0
    rest_backfilled: int = 0
    trade_gaps: int = 0
    depth_gaps: int = 0
    redis_up: bool = True
    redis_outages: int = 0
    private_subscribed: bool = False
    dropped_at_stop: int = 0
    journal_spilled: int = 0
    journal_drained: int = 0
    journal_dropped: int = 0
    journal_bytes: int = 0
    frames_lost_by_redis: int = 0
    redis_losses: int = 0
    oversized_frames: int = 0
    backfill_requests: int = 0
    backfills_merged: int = 0
    backfills_complete: int = 0
    backfills_partial: int = 0
    backfills_failed: int = 0
    last_error: str = ""


class BatchWriter:
    """Drain the queue in natural batches and append each batch in one pipelined round trip.

    The writer awaits one item, then takes everything already queued (up to ``batch_max``) and
    sends one ``pipeline(transaction=False)`` of XADDs. There is no timer: under light load every
    frame goes out at once, under heavy load batches grow by themselves. While Redis is down or
    refuses the entries (``OOM`` at ``maxmemory``, ``BUSY``, ``READONLY``...: any error) the
    batch is kept and retried with capped backoff, logged rate-limited with the server's own
    text (:class:`~common.backpressure.RedisOutage`); the readers keep filling the bounded queue
    meanwhile. A retry after a connection lost mid-pipeline can append
    an entry twice; ``(conn, seq)`` identifies such duplicates downstream.

    With a :class:`~ingestor.journal.Journal`, an outage that fills half the queue (or a stop
    during an outage) switches to *spilling*: the held batch and everything queued after it go to
    the journal, in order, and the readers never wait. Redis is probed with backoff; once it
    answers, the journal is drained oldest first (still taking new frames into the journal
    meanwhile, so order is kept) and the writer returns to the queue. A journal left over from an
    earlier run is drained before anything new.

    Redis may lose the tail of what it acknowledged (an AOF not yet on disk when the machine
    stopped, a failover to a replica that lagged). The writer keeps the last ``written_kept``
    frames it appended; after every outage, and whenever its connection to Redis was made again
    (a restart between two writes), it reads each stream back before writing anything new and
    hands the frames written after the newest one Redis still holds to ``on_lost``
    (:mod:`ingestor.lost`), then writes the markers that returns.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        queue: WriteQueue,
        stats: IngestorStats,
        *,
        batch_max: int = 5000,
        retry_backoff: Backoff | None = None,
        journal: Journal | None = None,
        clock: Callable[[], int] = time.time_ns,
        on_lost: LostHandler | None = None,
        written_kept: int = WRITTEN_KEPT,
        written_kept_bytes: int = WRITTEN_KEPT_BYTES,
    ) -> None:
        if batch_max <= 0:
            raise ValueError("batch_max must be positive")
        self.redis = redis
        self.queue = queue
        self.stats = stats
        self.batch_max = batch_max
        self.backoff = retry_backoff or Backoff(base_s=0.05, cap_s=2.0)
        self.journal = journal
        self.clock = clock
        #: The batch being written (kept here so a stop can count what it could not write).
        self.pending: list[Item] = []
        #: Set by the owner before it queues the final ``None``: spill instead of retrying.
        self.stopping = False
        self.spilling = journal is not None and not journal.empty()
        self._spill_at = max(1, queue.maxsize // 2) if queue.maxsize > 0 else 1 << 62
        #: Logs the outages rate-limited, quoting the server (``OOM command not allowed ...``).
        self.outage = RedisOutage(log, "ingestor writing frames (kept in the queue or journal)")
        self._done = False
        self.on_lost = on_lost
        #: The frames appended last, in order: what a read-back after a reconnect must find.
        self.written: deque[Item] = deque()
        self.written_kept = written_kept
        self.written_kept_bytes = written_kept_bytes
        self._written_bytes = 0
        #: Set by an outage or a (re)made connection: read back before writing anything new.
        self.check_tail = False
        #: The one seam to Redis; its channel (a single-server client) carries the appends.
        self.link = RedisLink(redis, role="ingestor")
        self._channel = self.link.channel() if self.link.direct else None
        self._reconnects_seen = 0

    async def run(self) -> None:
        """Write batches until the ``None`` sentinel has been taken, then return."""
        with self.outage:
            await self._run()

    async def _run(self) -> None:
        while True:
            if self.spilling:
                await self._spill()
                if self.spilling or self._done:
                    return  # stopped while spilling: the journal keeps the rest for next time
                continue
            if self._done:
                return
            first = await self.queue.get()
            batch = self.pending
            if first is None:
                self._done = True
            else:
                batch.append(first)
            while not self._done and len(batch) < self.batch_max:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    self._done = True
                else:
                    batch.append(item)
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[Item]) -> None:
        interrupted = False
        while True:
            try:
                if interrupted:
                    # The link dropped mid-batch: Redis may have appended a prefix of it. (What
                    # Redis lost of earlier batches is found by _send, after this.)
                    before = list(batch)
                    batch[:] = await _not_yet_written(self.redis, batch)
                    self._appended(_without(before, batch))
                    self.stats.entries_written += len(before) - len(batch)
                    interrupted = False
                    if not batch:
                        self.pending = []
                        self._recovered()
                        return
                failed = await self._send(batch)
            except REDIS_ERRORS as exc:  # unreachable, or refused (OOM...): keep the batch
                interrupted = True
                self._outage(exc)
            else:
                written = len(batch) - len(failed)
                self.stats.entries_written += written
                self._appended(_without(batch, [item for item, _ in failed]) if failed else batch)
                if not failed:
                    self.stats.batches_written += 1
                    self.pending = []
                    self._recovered()
                    return
                # Keep only what Redis refused (e.g. OOM); the rest is already appended.
                self._outage(failed[0][1], refused=len(failed))
                batch[:] = [item for item, _ in failed]
            if self.journal is not None and (self.stopping or self.queue.qsize() >= self._spill_at):
                self._to_journal(batch)
                self.pending = []
                self.spilling = True
                log.warning(
                    "spilling frames to the journal at %s until Redis is back",
                    self.journal.directory,
                )
                return
            await asyncio.sleep(self.backoff.next_delay_s())

    def _to_journal(self, items: list[Item]) -> None:
        assert self.journal is not None
        kept = self.journal.append(items)
        self.stats.journal_spilled += kept
        self.stats.journal_dropped += len(items) - kept
        self.stats.journal_bytes = self.journal.size

    def _take_queued(self) -> list[Item]:
        out: list[Item] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return out
            if item is None:
                self._done = True
            else:
                out.append(item)

    async def _spill(self) -> None:
        """Journal what arrives, probe Redis with backoff, drain the journal once it answers."""
        next_probe = 0.0
        while True:
            self._to_journal(self._take_queued())
            if self._done and self.stopping and not self.stats.redis_up:
                return
            if time.monotonic() >= next_probe:
                try:
                    await self._drain_journal()
                except REDIS_ERRORS as exc:
                    self._outage(exc)
                    next_probe = time.monotonic() + self.backoff.next_delay_s()
                else:
                    self.spilling = False
                    self._recovered()
                    return
            if self._done:
                return
            await asyncio.sleep(0.02)

    async def _drain_journal(self) -> None:
        journal = self.journal
        assert journal is not None
        journal.roll()
        while True:
            for segment in journal.closed_segments():
                for chunk, offset in journal.read(segment, self.batch_max):
                    failed = await self._send(chunk)
                    if failed:
                        raise failed[0][1]  # refused (OOM...): the segment stays for the next try
                    self._appended(chunk)
                    journal.consumed(segment, offset)
                    self.stats.entries_written += len(chunk)
                    self.stats.batches_written += 1
                    self.stats.journal_drained += len(chunk)
                    self._to_journal(self._take_queued())  # newer frames queue up behind
                journal.remove(segment)
                self.stats.journal_bytes = journal.size
            if journal.empty():
                break
            journal.roll()
        gaps = journal.take_gaps(self.clock())
        if gaps:
            failed = await self._send(gaps)
            if failed:
                raise failed[0][1]
            self._appended(gaps)
            self.stats.entries_written += len(gaps)
            log.error(
                "the spill journal was full: %d frames dropped, recorded as gap markers",
                journal.dropped_total,
                extra={"dropped": journal.dropped_total},
            )

    async def _send(self, batch: list[Item]) -> list[tuple[Item, Any]]:
        """Append ``batch`` in one round trip; return the items Redis refused, with the error.

        After an outage or a connection made again, what Redis lost is found first.
        """
        while True:
            if self.check_tail:
                await self._check_tail()
            try:
                return await self._append(batch, watch=True)
            except _Reconnected:
                continue

    async def _append(self, batch: list[Item], *, watch: bool) -> list[tuple[Item, Any]]:
        if self._channel is not None:
            return await _send_direct(self._channel, batch, self._reconnected if watch else None)
        pipe = self.redis.pipeline(transaction=False)
        for stream, frame in batch:
            pipe.xadd(stream, frame.to_fields())  # type: ignore[arg-type]
        results = await pipe.execute(raise_on_error=False)
        return [(item, r) for item, r in zip(batch, results, strict=True) if _is_error(r)]

    def _appended(self, items: list[Item]) -> None:
        """Keep what was just appended; forget the oldest past the count or byte bound."""
        if self.written_kept <= 0:
            return
        written = self.written
        written.extend(items)
        size = self._written_bytes + sum([len(frame.data) for _, frame in items])
        while len(written) > self.written_kept or size > self.written_kept_bytes:
            size -= len(written.popleft()[1].data)
        self._written_bytes = size

    def _reconnected(self, channel: Channel) -> bool:
        """Tell whether ``channel``'s connection was made again since the last write.

        Redis may have restarted between two writes without any write failing; a connection
        made again (or a new one) is the sign (:attr:`~common.redis_link.Channel.reconnects`).
        """
        if channel.reconnects != self._reconnects_seen:
            self._reconnects_seen = channel.reconnects
            self.check_tail = True
        return self.check_tail and bool(self.written)

    async def _check_tail(self) -> None:
        """Find what Redis lost of the frames written last; report it, write its markers."""
        by_stream: dict[str, list[RawFrame]] = {}
        for stream, frame in self.written:
            by_stream.setdefault(stream, []).append(frame)
        lost_items: list[Item] = []
        markers: list[Item] = []
        for stream, frames in by_stream.items():
            tail = WrittenTail(frames)
            try:
                found = await self._read_back(stream, tail, len(frames) + 1000)
            except rexc.ResponseError as exc:  # e.g. an ACL without read on raw
                log.warning("cannot read %s back to check what Redis kept: %s", stream, exc)
                continue
            lost = tail.lost()
            if not lost:
                continue
            lost_items += [(stream, frame) for frame in lost]
            self.stats.last_error = f"Redis lost {len(lost)} frames of {stream}"
            log.warning(
                "Redis lost %d frames of %s that it had acknowledged%s; recovering them",
                len(lost),
                stream,
                "" if found else " (none of the last ones written is left: maybe more)",
                extra={"stream": stream, "frames": len(lost), "whole": not found},
            )
            if self.on_lost is not None:
                markers += self.on_lost(stream, lost, not found)
        if markers:
            failed = await self._append(markers, watch=False)
            if failed:
                raise failed[0][1]  # refused (OOM...): the read-back is done again next time
            self.stats.entries_written += len(markers)
        if lost_items:
            self.stats.frames_lost_by_redis += len(lost_items)
            self.stats.redis_losses += 1
            gone = {id(frame) for _, frame in lost_items}
            kept = [item for item in self.written if id(item[1]) not in gone]
            self.written.clear()
            self._written_bytes = 0
            self._appended(kept)
        self._appended(markers)
        self.check_tail = False

    async def _read_back(self, stream: str, tail: WrittenTail, bound: int) -> bool:
        """Read ``stream`` newest first until ``tail`` finds a frame it wrote (or ``bound``)."""
        upper: bytes | str = "+"
        read = 0
        count = 64
        while read < bound:
            entries: Any = await self.redis.xrevrange(stream, max=upper, min="-", count=count)
            if not entries:
                return False
            frames = []
            for entry_id, fields in entries:  # newest first, and so each entry's frames
                for _, one in reversed(raw_entry_frames(entry_id, fields or {})):
                    try:
                        frames.append(RawFrame.from_fields(one))
                    except DecodeError:
                        continue
            if tail.find(frames):
                return True
            read += len(entries)
            last_id = entries[-1][0]
            upper = b"(" + last_id if isinstance(last_id, bytes) else "(" + last_id
            count = _READ_BACK
        return False

    def _outage(self, exc: BaseException, *, refused: int = 0) -> None:
        """Note a failed write: the frames stay queued (or journalled) and are written later."""
        reason = self.outage.failed(exc)
        self.stats.last_error = f"Redis refused {refused} entries: {reason}" if refused else reason
        self.check_tail = True
        if self.stats.redis_up:
            self.stats.redis_up = False
            self.stats.redis_outages += 1

    def _recovered(self) -> None:
        if not self.stats.redis_up:
            self.outage.recovered()
            self.stats.redis_up = True
            self.backoff.attempt = 0


def _append_script() -> bytes:
    """Build :data:`APPEND_SCRIPT`'s Lua from the raw entry layout."""
    names = ", ".join(f"c_{name}" for name in CHANNEL_FIELDS)
    header = ", ".join(f"ARGV[i + {k + 1}]" for k in range(len(CHANNEL_FIELDS)))
    value = {name: f"c_{name}" for name in CHANNEL_FIELDS}
    value.update({name: f"ARGV[i + {k}]" for k, name in enumerate(FRAME_FIELDS)})
    first = ", ".join(f"'{name}', {value[name]}" for name in RAW_FIELDS)
    width = 2 * len(RAW_FIELDS)  # the first frame's fields; ``frames n`` follow when packed
    more = "\n      ".join(
        f"args[m + {2 * k + 1}], args[m + {2 * k + 2}] = '{name}{FRAME_SEP}' .. n, ARGV[i + {k}]"
        for k, name in enumerate(FRAME_FIELDS)
    )
    packable = " or ".join(f"c_kind == '{kind}'" for kind in PACKABLE_KINDS)
    return f"""local key, refused = KEYS[1], {{}}
local {names}
local packs = false
local args, n, first, size = nil, 0, 0, 0
local function flush()
  if n == 0 then return end
  local r
  if n == 1 then
    r = redis.pcall('XADD', key, '*', unpack(args, 1, {width}))
  else
    args[{width + 1}], args[{width + 2}] = '{RAW_FRAMES}', tostring(n)
    r = redis.pcall('XADD', key, '*', unpack(args))
  end
  if type(r) == 'table' and r.err then
    for j = first, first + n - 1 do
      refused[#refused + 1] = j
      refused[#refused + 1] = r.err
    end
  end
  n = 0
end
local i, count, k = 1, #ARGV, 0
while i <= count do
  if ARGV[i] == 'h' then
    flush()
    {names} = {header}
    packs = {packable}
    i = i + {len(CHANNEL_FIELDS) + 1}
  else
    if n == 0 then
      args = {{{first}}}
      first, size, n = k, 0, 1
    else
      local m = {width + 2} + {2 * len(FRAME_FIELDS)} * (n - 1)
      {more}
      n = n + 1
    end
    size = size + #ARGV[i + {len(FRAME_FIELDS) - 1}]
    if not packs or n >= {RAW_PACK_MAX} or size >= {RAW_PACK_BYTES} then flush() end
    k = k + 1
    i = i + {len(FRAME_FIELDS)}
  end
end
flush()
return refused
""".encode()


#: Append one stream's frames in one call (atomic, one reply). ``ARGV`` is a run of records:
#: ``h`` and the constant fields' values (``v kind venue conn channel``) set the fields of the
#: entries that follow, and each ``seq ts_recv data`` is one frame. Consecutive WebSocket frames
#: after one ``h`` share an entry (up to :data:`common.contract.RAW_PACK_MAX` frames or
#: :data:`RAW_PACK_BYTES` of data: the packed layout of :mod:`common.contract`); any other frame
#: is an entry of its own, with the fields in :data:`common.contract.RAW_FIELDS` order. The reply
#: lists ``position, error`` of every frame Redis refused (e.g. OOM): all of an entry's frames.
APPEND_SCRIPT = _append_script()
_EVAL_HEAD = Script(APPEND_SCRIPT).eval_head + b"$1\r\n1\r\n"


def encode_append(stream: str, frames: list[RawFrame]) -> bytes:
    """Encode one ``EVAL`` of :data:`APPEND_SCRIPT` appending ``frames`` to ``stream`` in order."""
    parts: list[bytes] = []
    count = 4  # EVAL, the script, numkeys, the stream
    head: tuple[str, str, str, str, str] | None = None
    for frame in frames:
        now = channel_values(frame)
        if now != head:
            head = now
            parts.append(encode_command(["h", *now])[4:])  # no array header
            count += 1 + len(now)
        data = frame.data.encode()
        seq = b"%d" % frame.seq
        ts = b"%d" % frame.ts_recv
        parts.append(
            b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(seq), seq, len(ts), ts, len(data), data)
        )
        count += 3
    key = stream.encode()
    return b"*%d\r\n%s$%d\r\n%s\r\n%s" % (count, _EVAL_HEAD, len(key), key, b"".join(parts))


def _is_error(result: Any) -> bool:
    return isinstance(result, Exception)


class _Reconnected(Exception):
    """The connection for a write was made again: check what Redis kept before writing."""


def _without(items: list[Item], drop: list[Item]) -> list[Item]:
    """Return ``items`` without the very objects in ``drop`` (kept in order)."""
    if not drop:
        return list(items)
    gone = {id(item) for item in drop}
    return [item for item in items if id(item) not in gone]


async def _send_direct(
    channel: Channel, batch: list[Item], reconnected: Callable[[Channel], bool] | None = None
) -> list[tuple[Item, Any]]:
    """Append the batch with one atomic call per stream, all in one write on one connection.

    Each stream's frames go in one atomic ``EVAL`` of :data:`APPEND_SCRIPT` (order kept), so a
    write cut off mid-way leaves whole streams appended or not, never part of one. Where the
    ACL refuses scripts the seam notes it once and each stream's frames go as ``MULTI``, its
    XADDs, ``EXEC`` instead: as atomic, two more replies per stream. Returns the items Redis
    refused, with the error; a connection lost mid-way is discarded by the channel
    (:class:`~common.redis_link.RedisLost`). When ``reconnected`` says the connection was made
    again, nothing is sent and :class:`_Reconnected` is raised.
    """
    by_stream: dict[str, list[int]] = {}
    for i, (stream, _) in enumerate(batch):
        by_stream.setdefault(stream, []).append(i)
    link = channel.link
    failed: list[tuple[int, Exception]] = []
    await channel.open()
    try:
        if reconnected is not None and reconnected(channel):
            raise _Reconnected
        todo = list(by_stream.items())
        if link.scripted:
            payload = b"".join([encode_append(s, [batch[i][1] for i in p]) for s, p in todo])
            replies = await channel.request(payload, len(todo))
            refused = [r for r in replies if isinstance(r, rexc.NoPermissionError)]
            if refused:  # EVAL is not allowed: those streams go by MULTI/EXEC at once
                link.refuse_scripts(refused[0], "appending frames")
            later: list[tuple[str, list[int]]] = []
            for (stream, positions), reply in zip(todo, replies, strict=True):
                if isinstance(reply, rexc.NoPermissionError):
                    later.append((stream, positions))
                elif isinstance(reply, rexc.ResponseError):  # the whole call was refused
                    failed += [(i, reply) for i in positions]
                else:
                    for k in range(0, len(reply), 2):
                        error = refusal_error(_text(reply[k + 1]))  # OOM ... -> OutOfMemoryError
                        failed.append((positions[int(reply[k])], error))
            todo = later
        if todo:
            failed += await _send_transactions(channel, batch, todo)
    finally:
        await channel.release()
    return [(batch[i], error) for i, error in sorted(failed, key=lambda pair: pair[0])]


_MULTI, _EXEC = encode_command(["MULTI"]), encode_command(["EXEC"])


async def _send_transactions(
    channel: Channel, batch: list[Item], todo: list[tuple[str, list[int]]]
) -> list[tuple[int, Exception]]:
    """Append each stream's frames as ``MULTI``, XADDs, ``EXEC``; return the refused ones."""
    payload = b"".join(
        [_MULTI + b"".join([encode_raw_xadd(s, batch[i][1]) for i in p]) + _EXEC for s, p in todo]
    )
    await channel.send(payload)
    failed: list[tuple[int, Exception]] = []
    for _, positions in todo:
        replies = await channel.replies(len(positions) + 2)  # OK, QUEUED..., the EXEC answer
        executed = replies[-1]
        if isinstance(executed, Exception) or not isinstance(executed, list):
            error = executed if isinstance(executed, Exception) else rexc.ResponseError("EXEC")
            queued = [r for r in replies[:-1] if isinstance(r, Exception)]
            failed += [(i, queued[0] if queued else error) for i in positions]
            continue
        failed += [(i, r) for i, r in zip(positions, executed, strict=True) if _is_error(r)]
    return failed


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


async def _not_yet_written(redis: Any, batch: list[Item]) -> list[Item]:
    """Drop the prefix of ``batch`` that an interrupted write already appended.

    One writer appends each stream's entries in batch order, so if a stream's newest entry is one
    of this batch's frames, that frame and every earlier frame of the batch for the same stream
    are in Redis already; retrying them would duplicate them.
    """
    done: set[int] = set()
    for stream in dict.fromkeys(s for s, _ in batch):
        newest = await redis.xrevrange(stream, count=1)
        if not newest:
            continue
        entry_id, fields = newest[0]
        try:  # the entry's last frame (a packed entry holds several)
            last = RawFrame.from_fields(raw_entry_frames(entry_id, fields or {})[-1][1])
        except DecodeError:
            continue
        positions = [i for i, (s, frame) in enumerate(batch) if s == stream]
        hit = next((i for i in positions if batch[i][1] == last), None)
        if hit is not None:
            done.update(i for i in positions if i <= hit)
    return [item for i, item in enumerate(batch) if i not in done]
