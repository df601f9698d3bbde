"""Write queued raw frames to Redis Streams in natural batches, holding them through outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.backoff import Backoff
from common.redis_io import REDIS_DOWN
from common.schema import RawFrame
from ingestor.journal import Journal

__all__ = ["BatchWriter", "IngestorStats", "Item", "WriteQueue"]

log = logging.getLogger("tickpipe.ingestor")

#: One queued entry: the stream to append to and the frame or marker. ``None`` ends the writer.
Item = tuple[str, RawFrame]
WriteQueue = asyncio.Queue[Item | None]


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
    last_error: str = ""


class BatchWriter:
    """Drain the queue in natural batches and append each batch in one pipelined round trip.

    The writer awaits one item, then takes everything already queued (up to ``batch_max``) and
    sends one ``pipeline(transaction=False)`` of XADDs. There is no timer: under light load every
    frame goes out at once, under heavy load batches grow by themselves. While Redis is down the
    batch is kept and retried with capped backoff (logged once per outage); the readers keep
    filling the bounded queue meanwhile. A retry after a connection lost mid-pipeline can append
    an entry twice; ``(conn, seq)`` identifies such duplicates downstream.

    With a :class:`~ingestor.journal.Journal`, an outage that fills half the queue (or a stop
    during an outage) switches to *spilling*: the held batch and everything queued after it go to
    the journal, in order, and the readers never wait. Redis is probed with backoff; once it
    answers, the journal is drained oldest first (still taking new frames into the journal
    meanwhile, so order is kept) and the writer returns to the queue. A journal left over from an
    earlier run is drained before anything new.
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
        self._outage_started: float | None = None
        self._done = False

    async def run(self) -> None:
        """Write batches until the ``None`` sentinel has been taken, then return."""
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
        while True:
            try:
                failed = await self._send(batch)
            except REDIS_DOWN as exc:
                self._outage(f"Redis unreachable: {exc}")
            else:
                written = len(batch) - len(failed)
                self.stats.entries_written += written
                if not failed:
                    self.stats.batches_written += 1
                    self.pending = []
                    self._recovered()
                    return
                # Keep only what Redis refused (e.g. OOM); the rest is already appended.
                self._outage(f"Redis refused {len(failed)} entries: {failed[0][1]!r}")
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
                except REDIS_DOWN as exc:
                    self._outage(f"Redis unreachable: {exc}")
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
                        raise ConnectionError(f"Redis refused {len(failed)} journal entries")
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
                raise ConnectionError("Redis refused the journal gap markers")
            self.stats.entries_written += len(gaps)
            log.error(
                "the spill journal was full: %d frames dropped, recorded as gap markers",
                journal.dropped_total,
                extra={"dropped": journal.dropped_total},
            )

    async def _send(self, batch: list[Item]) -> list[tuple[Item, Any]]:
        pipe = self.redis.pipeline(transaction=False)
        for stream, frame in batch:
            pipe.xadd(stream, frame.to_fields())  # type: ignore[arg-type]
        results = await pipe.execute(raise_on_error=False)
        return [(item, r) for item, r in zip(batch, results, strict=True) if _is_error(r)]

    def _outage(self, reason: str) -> None:
        self.stats.last_error = reason
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            self.stats.redis_up = False
            self.stats.redis_outages += 1
            log.warning(
                "cannot write to Redis, buffering frames and retrying: %s",
                reason,
                extra={"queued": self.queue.qsize() + len(self.pending)},
            )

    def _recovered(self) -> None:
        if self._outage_started is not None:
            outage_s = time.monotonic() - self._outage_started
            self._outage_started = None
            self.stats.redis_up = True
            self.backoff.attempt = 0
            log.warning(
                "Redis writable again after %.1f s",
                outage_s,
                extra={"outage_s": round(outage_s, 3)},
            )


def _is_error(result: Any) -> bool:
    return isinstance(result, Exception)
