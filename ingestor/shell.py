"""Run the ingestor: keep the venue connections open and record every frame into Redis Streams.

One market-data connection per partition and, when an API key is configured, one private
WS-API connection subscribed to the user-data stream (:class:`ingestor.connection.Connection`).
Each connection's reader stamps frames ``(conn, seq, ts_recv)`` and puts them on one bounded
queue; one writer drains it in natural batches (:class:`ingestor.writer.BatchWriter`).

Queue policy: the queue holds at most ``queue_max`` entries. When it is full a reader *awaits*
room, which stops it reading its socket: back-pressure reaches the venue through TCP, nothing is
dropped in-process, and every wait is counted (``queue_full_waits``). If the wait lasts long the
venue drops the connection, which the disconnect marker records.

Stop: close the sockets (their disconnect markers are queued behind their frames), flush the
queue to Redis within ``flush_timeout_s`` (what cannot be written by then is counted and logged),
remove the health key, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from common.backoff import Backoff
from common.errors import ConfigError
from common.health import HealthReporter
from common.redis_io import connect_redis
from common.settings import Settings
from ingestor.connection import Connection, WsOptions
from ingestor.session import plan_links, run_token, user_data_subscribe_request
from ingestor.writer import BatchWriter, IngestorStats, WriteQueue

__all__ = ["Ingestor", "run"]

log = logging.getLogger("tickpipe.ingestor")


class Ingestor:
    """The ingestor's state and tasks; :func:`run` is the usual way in."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis: aioredis.Redis | None = None,
        clock: Callable[[], int] | None = None,
        queue_max: int = 100_000,
        batch_max: int = 5000,
        flush_timeout_s: float = 5.0,
        backoff_factory: Callable[[], Backoff] | None = None,
        options: WsOptions | None = None,
    ) -> None:
        if queue_max <= 0:
            raise ValueError("queue_max must be positive")
        self.settings = settings
        self.redis = redis
        self.clock = clock or time.time_ns
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.flush_timeout_s = flush_timeout_s
        self.options = options or WsOptions()
        self.stats = IngestorStats()
        self.queue: WriteQueue = asyncio.Queue(maxsize=queue_max)
        self.links = plan_links(settings)
        self._halt = asyncio.Event()
        self._fatal: ConfigError | None = None
        self.writer: BatchWriter | None = None
        self._rate_at = time.monotonic()
        self._rate_frames = 0
        self._frames_per_s = 0.0
        token = run_token(self.clock())
        make_backoff = backoff_factory or Backoff
        self.connections = [
            Connection(
                link,
                venue=settings.venue,
                queue=self.queue,
                stats=self.stats,
                clock=self.clock,
                halt=self._halt,
                token=token,
                backoff=make_backoff(),
                options=self.options,
                user_data_request=self._user_data_request if link.private else None,
            )
            for link in self.links
        ]

    def _user_data_request(self, request_id: int, timestamp_ms: int) -> str:
        s = self.settings
        return user_data_subscribe_request(
            s.binance_api_key.reveal(),
            s.binance_api_secret.reveal(),
            timestamp_ms=timestamp_ms,
            request_id=request_id,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set (or the venue rejects the key), then flush and return."""
        owns_redis = self.redis is None
        redis = self.redis if self.redis is not None else connect_redis(self.settings.redis_url)
        writer = self.writer = BatchWriter(redis, self.queue, self.stats, batch_max=self.batch_max)
        health = HealthReporter(
            redis,
            self.settings.keys,
            "ingestor",
            self.settings.instance,
            interval_s=self.settings.health_interval_s,
            stats=self.health_stats,
        )
        health_stop = asyncio.Event()
        writer_task = asyncio.create_task(writer.run(), name="ingestor-writer")
        conn_tasks = [
            asyncio.create_task(self._guard(c), name=f"ingestor-{c.link.label}")
            for c in self.connections
        ]
        stop_task = asyncio.create_task(self._halt_on(stop))
        halt_task = asyncio.create_task(self._halt.wait())
        health.status = "ok"
        health_task = asyncio.create_task(health.run(health_stop), name="ingestor-health")
        log.info(
            "ingestor running",
            extra={"connections": [link.url for link in self.links], "queue_max": self.queue_max},
        )
        try:
            await asyncio.wait(
                [halt_task, writer_task, *conn_tasks], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._halt.set()
            stop_task.cancel()
            halt_task.cancel()
            await self._close_connections(conn_tasks)
            await self._finish_writer(writer_task)
            health_stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(health_task, self.flush_timeout_s)
            if owns_redis:
                await redis.aclose()
        for task in [*conn_tasks, writer_task]:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._fatal is not None:
            raise self._fatal
        log.info("ingestor stopped", extra=self.health_stats())

    async def _guard(self, connection: Connection) -> None:
        try:
            await connection.keep_connected()
        except ConfigError as exc:
            # One clear message, raised from run() once everything is flushed and closed.
            self.stats.last_error = str(exc)
            if self._fatal is None:
                self._fatal = exc
            self._halt.set()

    async def _halt_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        log.info("stopping: closing connections and flushing the queue")
        self._halt.set()

    async def _close_connections(self, tasks: list[asyncio.Task[None]]) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.options.close_timeout_s + 1.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _finish_writer(self, writer_task: asyncio.Task[None]) -> None:
        async def finish() -> None:
            await self.queue.put(None)
            await writer_task

        if writer_task.done():
            return
        try:
            await asyncio.wait_for(finish(), self.flush_timeout_s)
        except TimeoutError:
            writer_task.cancel()
            await asyncio.wait([writer_task])
            pending = self.writer.pending if self.writer else []
            queued = sum(1 for item in _drain(self.queue) if item is not None)
            self.stats.dropped_at_stop = queued + len(pending)
            log.error(
                "stopped before Redis took %d frames (gave up after %.1f s)",
                self.stats.dropped_at_stop,
                self.flush_timeout_s,
                extra={"dropped": self.stats.dropped_at_stop},
            )

    def health_stats(self) -> dict[str, Any]:
        """Return the figures published in the health key."""
        now = time.monotonic()
        elapsed = now - self._rate_at
        if elapsed >= 0.5:
            self._frames_per_s = (self.stats.frames_received - self._rate_frames) / elapsed
            self._rate_at, self._rate_frames = now, self.stats.frames_received
        pending = len(self.writer.pending) if self.writer else 0
        s = self.stats
        return {
            "frames_received": s.frames_received,
            "frames_per_s": round(self._frames_per_s, 1),
            "batches_written": s.batches_written,
            "entries_written": s.entries_written,
            "queue_depth": self.queue.qsize() + pending,
            "queue_max": self.queue_max,
            "queue_full_waits": s.queue_full_waits,
            "connections": len(self.links),
            "connections_up": s.connections_up,
            "reconnects": s.reconnects,
            "redis_up": s.redis_up,
            "redis_outages": s.redis_outages,
            "private_subscribed": s.private_subscribed,
            "dropped_at_stop": s.dropped_at_stop,
            "last_error": s.last_error,
        }


def _drain(queue: WriteQueue) -> list[Any]:
    out = []
    while True:
        try:
            out.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return out


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    queue_max: int = 100_000,
    batch_max: int = 5000,
    flush_timeout_s: float = 5.0,
    backoff_factory: Callable[[], Backoff] | None = None,
) -> None:
    """Ingest the configured venue into Redis until ``stop`` is set.

    Raises :class:`common.errors.ConfigError` (exit code 2) when the venue rejects the API key.
    """
    ingestor = Ingestor(
        settings,
        redis=redis,
        clock=clock,
        queue_max=queue_max,
        batch_max=batch_max,
        flush_timeout_s=flush_timeout_s,
        backoff_factory=backoff_factory,
    )
    await ingestor.run(stop)
