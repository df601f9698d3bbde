"""Run the ingestor: keep the venue connections open and record every frame into Redis Streams.

Each partition's wanted streams (symbols x ``TICKPIPE_CHANNELS``) are spread over market-data
connection slots of at most 1024 streams (:class:`ingestor.control.Subscriptions`, which also
follows the partition's control stream); with an API key one private WS-API slot subscribes the
user-data stream. Each slot (:class:`ingestor.connection.Connection`) stamps frames
``(conn, seq, ts_recv)`` and puts them on one bounded queue; one writer drains it in natural
batches (:class:`ingestor.writer.BatchWriter`). REST snapshots and trade backfills
(:class:`ingestor.rest.RestFetcher`) go through the same queue. The venue's description
(:func:`venues.registry.venue`) plans the slots and says how they run: a venue whose package
supplies adapters (Alpaca: one market-data connection for the feed and the trading stream,
:mod:`venues.alpaca.ingest`) runs them as :func:`ingestor.adapter.adapter_slots` and has its
control entries followed by :class:`ingestor.adapter_control.AdapterControl`.

Queue policy: the queue holds at most ``queue_max`` entries. While Redis is unreachable and the
queue is half full, the writer spills to the journal under ``TICKPIPE_DATA_DIR`` (disk cap
``TICKPIPE_INGESTOR_JOURNAL_MAX_MB``) and drains it in order once Redis is back. Without a
journal a full queue makes a reader *await* room, which stops it reading its socket: back-pressure
reaches the venue through TCP, nothing is dropped in-process, and every wait is counted
(``queue_full_waits``).

Stop: close the sockets (their disconnect markers are queued behind their frames), flush the
queue to Redis within ``flush_timeout_s`` (with Redis down, into the journal for the next run;
without a journal what cannot be written is counted and logged), remove the health key, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.backoff import Backoff
from tickpipe.common.contract import RawKind, raw_frames_of
from tickpipe.common.errors import ConfigError
from tickpipe.common.health import HealthReporter
from tickpipe.common.links import Link, run_token
from tickpipe.common.names import Partition
from tickpipe.common.redis_io import REDIS_ERRORS, connect_redis
from tickpipe.common.settings import Settings
from tickpipe.common.tls import trust_ca_file
from tickpipe.common.venue_clock import DEFAULT_RECV_WINDOW_MS, VenueClock
from tickpipe.ingestor.adapter import adapter_slots
from tickpipe.ingestor.adapter_control import AdapterControl
from tickpipe.ingestor.connection import Connection, WsOptions
from tickpipe.ingestor.control import Subscriptions
from tickpipe.ingestor.gaps import trade_id_of
from tickpipe.ingestor.gapwatch import GapWatch
from tickpipe.ingestor.journal import Journal, JournalLocked
from tickpipe.ingestor.rest import RestFetcher
from tickpipe.ingestor.subscriptions import MAX_STREAMS_PER_CONN, ControlRequest
from tickpipe.ingestor.writer import BatchWriter, IngestorStats, WriteQueue
from tickpipe.ingestor.wsclient import check_client, default_client
from tickpipe.venues.registry import venue

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
        streams_per_conn: int = MAX_STREAMS_PER_CONN,
    ) -> None:
        if queue_max <= 0:
            raise ValueError("queue_max must be positive")
        self.settings = settings
        self.redis = redis
        self.clock = clock or time.time_ns
        self.queue_max = queue_max
        self.batch_max = batch_max
        self.flush_timeout_s = flush_timeout_s
        if settings.ws_client:
            check_client(settings.ws_client)  # not installed: one line, exit 2
        self.options = options or WsOptions(
            stale_max_s=settings.ingestor_stale_max_s,
            lifetime_s=settings.binance_conn_lifetime_s,
            client=settings.ws_client,
        )
        self.stats = IngestorStats()
        self.queue: WriteQueue = asyncio.Queue(maxsize=queue_max)
        self.venue = venue(settings.venue)
        #: The venue's clock offset, measured by the private slot before it signs (if any).
        self.venue_clock = VenueClock()
        self.venue.check_keys(settings)
        self.links = self.venue.plan_links(settings)
        self._halt = asyncio.Event()
        self._fatal: ConfigError | None = None
        self.writer: BatchWriter | None = None
        self._rate_at = time.monotonic()
        self._rate_frames = 0
        self._frames_per_s = 0.0
        self._token = run_token(self.clock())
        self._make_backoff = backoff_factory or Backoff
        self.rest = RestFetcher(
            settings.binance_rest_url,
            venue=settings.venue,
            queue=self.queue,
            stats=self.stats,
            clock=self.clock,
            api_key=settings.binance_api_key.reveal(),
        )
        self.gaps = GapWatch(self.rest, self.queue, self.stats, settings.venue, self.clock)
        self.subscriptions: Subscriptions | None = None  # venues with combined-stream slots
        if self.venue.combined_streams is not None:
            self.subscriptions = Subscriptions(
                settings,
                self._market_slot,
                cap=streams_per_conn,
                on_snapshot=self._on_snapshot,
                on_backfill=self._on_backfill,
            )
        self.connections = [self._connection(link) for link in self.links if link.private]
        self.adapter_control: AdapterControl | None = None
        self.adapters: list[Any] = []
        if self.venue.ingest_adapters is not None:
            adapters = self.adapters = self.venue.ingest_adapters(settings, self.links)
            self.connections = adapter_slots(
                self.links, adapters, backoff_factory=self._make_backoff, venue=settings.venue,
                queue=self.queue, stats=self.stats, clock=self.clock, halt=self._halt,
                token=self._token, options=self.options,
            )  # fmt: skip
            self.adapter_control = AdapterControl(settings, adapters[0])

    def _connection(self, link: Link, streams: list[str] | None = None) -> Connection:
        return Connection(
            link,
            venue=self.settings.venue,
            queue=self.queue,
            stats=self.stats,
            clock=self.clock,
            halt=self._halt,
            token=self._token,
            backoff=self._make_backoff(),
            options=self.options,
            user_data_request=self._user_data_request if link.private else None,
            streams=streams,
            ws_base=self.settings.binance_ws_url,
            protocol=self.venue.combined_streams,
            on_frame=self.gaps.on_frame,
            on_delivered=self.gaps.on_delivered,
            server_time=self.venue.server_time if link.private else None,
            venue_clock=self.venue_clock,
        )

    def _on_snapshot(self, partition: Partition, symbol: str, reason: str) -> None:
        self.rest.snapshot(self.settings.keys.raw(partition), symbol, reason)

    def _on_backfill(self, partition: Partition, request: ControlRequest) -> None:
        symbol = request.symbols[0]
        self.stats.backfill_requests += 1
        log.info(
            "backfill of %s %s %d..%d requested",
            symbol,
            request.stream,
            request.first_id,
            request.last_id,
            extra={"reason": request.reason, "entry_id": request.entry_id},
        )
        self.rest.backfill(
            self.settings.keys.raw(partition),
            symbol,
            request.first_id,
            request.last_id,
            request.reason or "requested",
            id_space=request.stream,
        )

    def _market_slot(self, partition: Partition, n: int, streams: list[str]) -> Connection:
        label = str(partition) if n == 0 else f"{partition}#{n + 1}"
        assert self.venue.market_url is not None  # venues with adapter slots plan their own
        link = Link(
            label, self.venue.market_url(self.settings), self.settings.keys.raw(partition), "market"
        )
        return self._connection(link, list(streams))

    def _user_data_request(self, request_id: int, timestamp_ms: int) -> str:
        assert self.venue.user_data_request is not None  # only planned for venues that have one
        return self.venue.user_data_request(self.settings, request_id, timestamp_ms)

    async def _seed_trade_ids(self, redis: aioredis.Redis, scan: int = 20_000) -> None:
        """Learn each symbol's last recorded trade id (and aggregate trade id) from raw, so that
        trades sent before a crash but never written are backfilled when the first live trade
        shows the hole."""
        keys = self.settings.keys
        try:
            for partition in self.settings.partitions():
                entries: Any = await redis.xrevrange(keys.raw(partition), count=scan)
                for _, fields in raw_frames_of(entries):
                    if not fields or fields.get(b"kind") != RawKind.WS.encode():
                        continue
                    trade = trade_id_of(fields.get(b"data", b""))
                    if trade is None:
                        continue
                    symbol, space, trade_id = trade
                    last = (self.gaps.trade_ids if space == "trades" else self.gaps.agg_ids).last
                    if trade_id > last.get(symbol, -1):
                        last[symbol] = trade_id
        except REDIS_ERRORS as exc:  # down, refused, or an ACL without read on raw
            log.warning("could not read the last trade ids from raw: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until ``stop`` is set (or the venue rejects the key), then flush and return."""
        owns_redis = self.redis is None
        redis = self.redis if self.redis is not None else connect_redis(self.settings.redis_url)
        journal = self._open_journal()
        writer = self.writer = BatchWriter(
            redis,
            self.queue,
            self.stats,
            batch_max=self.batch_max,
            journal=journal,
            clock=self.clock,
            on_lost=self.gaps.on_lost,
        )
        health = HealthReporter(
            redis,
            self.settings.keys,
            "ingestor",
            self.settings.instance,
            interval_s=self.settings.health_interval_s,
            stats=self.health_stats,
        )
        health_stop = asyncio.Event()
        if self.adapter_control is None:
            await self._seed_trade_ids(redis)
        writer_task = asyncio.create_task(writer.run(), name="ingestor-writer")
        subs = self.subscriptions
        if self.adapter_control is not None:
            follow_task = asyncio.create_task(self.adapter_control.run(redis, self._halt))
        else:
            assert subs is not None  # a venue without adapters has combined-stream slots
            try:
                last = await asyncio.wait_for(subs.replay(redis), self.flush_timeout_s)
            except TimeoutError:
                last = {self.settings.keys.control(p): "0-0" for p in subs.subs}
            self.connections = [*subs.initial_slots(), *self.connections]
            follow_task = asyncio.create_task(subs.follow(redis, last, self._halt))
        conn_tasks = [self._start(c) for c in self.connections]
        opened_task = asyncio.create_task(self._open_new_slots(conn_tasks))
        rest_task = asyncio.create_task(self.rest.run(), name="ingestor-rest")
        stop_task = asyncio.create_task(self._halt_on(stop))
        halt_task = asyncio.create_task(self._halt.wait())
        health.status = "ok"
        health_task = asyncio.create_task(health.run(health_stop), name="ingestor-health")
        log.info(
            "ingestor running",
            extra={
                "connections": [c.link.label for c in self.connections],
                "queue_max": self.queue_max,
                "ws_client": self.options.client or default_client(),
            },
        )
        try:
            await asyncio.wait([halt_task, writer_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._halt.set()
            stop_task.cancel()
            halt_task.cancel()
            opened_task.cancel()
            rest_task.cancel()
            follow_task.cancel()
            await self._close_connections(conn_tasks)
            await self._finish_writer(writer_task)
            health_stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(health_task, self.flush_timeout_s)
            if journal is not None:
                journal.close()
            if owns_redis:
                await redis.aclose()
        for task in [*conn_tasks, writer_task]:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._fatal is not None:
            raise self._fatal
        log.info("ingestor stopped", extra=self.health_stats())

    def journal_dir(self) -> Path:
        """Return where this namespace's spill journal lives (under ``TICKPIPE_DATA_DIR``)."""
        return Path(self.settings.data_dir) / "ingestor-journal" / self.settings.namespace

    def _open_journal(self) -> Journal | None:
        max_mb = self.settings.ingestor_journal_max_mb
        if max_mb <= 0:
            return None
        try:
            return Journal(self.journal_dir(), max_bytes=max_mb * 1024 * 1024)
        except (JournalLocked, OSError) as exc:
            log.warning("running without a spill journal: %s", exc)
            return None

    def _start(self, connection: Connection) -> asyncio.Task[None]:
        return asyncio.create_task(
            self._guard(connection), name=f"ingestor-{connection.link.label}"
        )

    async def _open_new_slots(self, tasks: list[asyncio.Task[None]]) -> None:
        while True:
            assert self.subscriptions is not None  # only started for combined-stream slots
            connection = await self.subscriptions.opened.get()
            self.connections.append(connection)
            tasks.append(self._start(connection))

    async def _guard(self, connection: Connection) -> None:
        try:
            await connection.keep_connected()
        except ConfigError as exc:
            # One clear message, raised from run() once everything is flushed and closed.
            self.stats.last_error = str(exc)
            if self._fatal is None:
                self._fatal = exc
            self._halt.set()
        except Exception:
            self._halt.set()
            raise

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
            if self.writer is not None:
                self.writer.stopping = True
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
            "connections": len(self.connections),
            "streams": sum(len(c.streams or ()) for c in self.connections),
            "subscriptions_refused": s.subscriptions_refused,
            "trade_gaps": s.trade_gaps,
            "depth_gaps": s.depth_gaps,
            "rest_snapshots": s.rest_snapshots,
            "rest_backfilled": s.rest_backfilled,
            "rest_pending": self.rest.pending(),
            "backfill_requests": s.backfill_requests,
            "backfills_merged": s.backfills_merged,
            "backfills_complete": s.backfills_complete,
            "backfills_partial": s.backfills_partial,
            "backfills_failed": s.backfills_failed,
            "redis_losses": s.redis_losses,
            "frames_lost_by_redis": s.frames_lost_by_redis,
            "oversized_frames": s.oversized_frames,
            "connections_up": s.connections_up,
            "reconnects": s.reconnects,
            "redis_up": s.redis_up,
            "redis_outages": s.redis_outages,
            "private_subscribed": s.private_subscribed,
            "dropped_at_stop": s.dropped_at_stop,
            "rotations": s.rotations,
            "stale_detected": s.stale_detected,
            "streams_silent": s.streams_silent,
            "symbols_quiet": s.symbols_quiet,
            "quiet_symbols": sorted({q for c in self.connections for q in c.quiet_symbols}),
            **self.venue_clock.figures(DEFAULT_RECV_WINDOW_MS),
            "journal_spilled": s.journal_spilled,
            "journal_drained": s.journal_drained,
            "journal_dropped": s.journal_dropped,
            "journal_bytes": s.journal_bytes,
            "scripts_refused": self.writer.link.scripts_refused if self.writer else 0,
            "last_error": s.last_error,
            **self._adapter_counts(),
        }

    def _adapter_counts(self) -> dict[str, int]:
        """An adapter's own counters (``counts``: IBKR's keep-alives, re-authentications...),
        summed over the adapters and named ``venue_<counter>``."""
        out: dict[str, int] = {}
        for adapter in self.adapters:
            for name, value in getattr(adapter, "counts", {}).items():
                out[f"venue_{name}"] = out.get(f"venue_{name}", 0) + int(value)
        return out


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
    trust_ca_file(settings.ca_file)
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
