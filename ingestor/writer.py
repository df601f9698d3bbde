"""Write queued raw frames to Redis Streams in natural batches, holding them through outages."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.backoff import Backoff
from common.redis_io import REDIS_DOWN
from common.schema import RawFrame

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
    redis_up: bool = True
    redis_outages: int = 0
    private_subscribed: bool = False
    dropped_at_stop: int = 0
    last_error: str = ""


class BatchWriter:
    """Drain the queue in natural batches and append each batch in one pipelined round trip.

    The writer awaits one item, then takes everything already queued (up to ``batch_max``) and
    sends one ``pipeline(transaction=False)`` of XADDs. There is no timer: under light load every
    frame goes out at once, under heavy load batches grow by themselves. While Redis is down the
    batch is kept and retried with capped backoff (logged once per outage); the readers keep
    filling the bounded queue meanwhile. A retry after a connection lost mid-pipeline can append
    an entry twice; ``(conn, seq)`` identifies such duplicates downstream.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        queue: WriteQueue,
        stats: IngestorStats,
        *,
        batch_max: int = 5000,
        retry_backoff: Backoff | None = None,
    ) -> None:
        if batch_max <= 0:
            raise ValueError("batch_max must be positive")
        self.redis = redis
        self.queue = queue
        self.stats = stats
        self.batch_max = batch_max
        self.backoff = retry_backoff or Backoff(base_s=0.05, cap_s=2.0)
        #: The batch being written (kept here so a stop can count what it could not write).
        self.pending: list[Item] = []
        self._outage_started: float | None = None

    async def run(self) -> None:
        """Write batches until the ``None`` sentinel has been taken, then return."""
        done = False
        while not done:
            first = await self.queue.get()
            batch = self.pending
            if first is None:
                done = True
            else:
                batch.append(first)
            while not done and len(batch) < self.batch_max:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    done = True
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
            await asyncio.sleep(self.backoff.next_delay_s())

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
