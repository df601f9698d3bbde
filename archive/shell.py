"""Run the archive stage: copy raw and normalised streams into partitioned Parquet, continuously.

The archive reads every archived stream of every partition (``raw``, ``trades``, ``quotes``,
``book``, ``bars:*``, ``signals``, ``gaps``, the venue's own bars, corrections and statuses) and of
the venue (``private-raw``, ``order-updates``, ``orders``) through its own consumer group
(``archive``), holds each stream's entries in a :class:`~archive.layout.Segment`, and rolls the
segment to files when it reaches ``TICKPIPE_ARCHIVE_ROLL_MB`` or ``TICKPIPE_ARCHIVE_ROLL_S``.
A roll takes three steps, in this order:

1. **write** the files (:func:`archive.files.write_segment`: intent first, each file synced and
   renamed into place);
2. **record** the stream's watermark, the last entry id archived, in Redis
   (:func:`common.names.archive_watermark`): the processor's retention trims the stream only
   below it;
3. **acknowledge** the segment's entries in the consumer group, then drop the intent.

A restart resumes exactly: it deletes the files of a segment that was written but not recorded
(:func:`archive.files.recover`), then reads its own pending entries again from the start; those
at or below the watermark were archived already and are only acknowledged, the rest are archived.
Every entry therefore lands in exactly one file, whichever step a ``kill -9`` interrupts.

A stop (SIGTERM) writes every open segment before returning. While Redis refuses or is away the
stage logs it once, keeps its open segments, and reads again when Redis is back; while a file
cannot be written (a full disk) it logs, counts and retries, acknowledging nothing meanwhile.
One archive process runs per deployment (its consumer name is fixed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tickpipe.archive.files import (
    finish_segment,
    intent_streams,
    load_parquet,
    recover,
    undo_segment,
    write_segment,
)
from tickpipe.archive.layout import Segment
from tickpipe.common.backoff import Backoff
from tickpipe.common.contract import entry_key
from tickpipe.common.health import HealthReporter
from tickpipe.common.names import BAR_INTERVALS, GROUP_ARCHIVE, archive_watermark
from tickpipe.common.redis_io import (
    REDIS_ERRORS,
    connect_redis,
    ensure_group,
    redis_reason,
    xreadgroup_streams,
)
from tickpipe.common.schema import decode_fields, text_of
from tickpipe.common.settings import Settings
from tickpipe.common.stopping import wait_stop

__all__ = ["CONSUMER", "SERVICE", "ArchiveStats", "archive_root", "archived_streams", "run"]

SERVICE = "archive"
#: The archive's consumer name in its group: fixed, so a restart reads its own pending entries.
CONSUMER = "archive"
#: Entry ids acknowledged per XACK.
ACK_CHUNK = 5000

log = logging.getLogger("tickpipe.archive")
Step = Callable[[str, str], None]


def archive_root(settings: Settings) -> Path:
    """The archive's directory: ``TICKPIPE_ARCHIVE_DIR``, else ``<data dir>/archive``."""
    return (
        Path(settings.archive_dir) if settings.archive_dir else Path(settings.data_dir) / "archive"
    )


def archived_streams(settings: Settings) -> list[list[tuple[str, str, str]]]:
    """The archived streams as ``(stream, venue, source)``, grouped by hash tag (one read each)."""
    keys = settings.keys
    out: list[list[tuple[str, str, str]]] = []
    for p in settings.partitions():
        source = str(p)
        names = [
            keys.raw(p), keys.trades(p), keys.quotes(p), keys.book(p),
            *(keys.bars(p, i) for i in BAR_INTERVALS), keys.signals(p), keys.gaps(p),
            keys.venue_bars(p), keys.trade_corrections(p), keys.venue_status(p), keys.tickers(p),
            keys.partial_depth(p),
        ]  # fmt: skip
        out.append([(name, p.venue, source) for name in names])
    venue = settings.venue
    names = [
        keys.private_raw(venue), keys.order_updates(venue), keys.orders(venue),
        keys.balances(venue),
    ]  # fmt: skip
    out.append([(name, venue, venue) for name in names])
    return out


@dataclass
class ArchiveStats:
    """Counters shown in the health record."""

    entries: int = 0  # entries archived (recorded and acknowledged)
    files: int = 0
    segments: int = 0
    open_entries: int = 0  # held in open segments
    reacked: int = 0  # pending entries found already archived after a restart
    removed_files: int = 0  # files of unrecorded segments deleted on recovery
    write_errors: int = 0
    redis_errors: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {f"archive_{k}": v for k, v in self.__dict__.items()}


def _decoded(fields: dict[Any, Any]) -> dict[str, str]:
    """The entry's fields as text (redis-py answers bytes): the hot path of the stage."""
    try:
        return {k.decode(): v.decode() for k, v in fields.items()}
    except AttributeError:  # text already
        return decode_fields(fields)
    except UnicodeDecodeError:  # Parquet text must be UTF-8: keep what can be read
        return {text_of(k): v.decode(errors="replace") if isinstance(v, bytes) else v
                for k, v in fields.items()}  # fmt: skip


class _Group:
    """The streams of one hash tag: read together, each with its own open segment."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: Settings,
        streams: list[tuple[str, str, str]],
        root: Path,
        stats: ArchiveStats,
        clock: Callable[[], int],
        on_step: Step,
        block_ms: int,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.streams = {name: (venue, source) for name, venue, source in streams}
        self.root = root
        self.stats = stats
        self.clock = clock
        self.on_step = on_step
        self.block_ms = block_ms
        self.max_bytes = settings.archive_roll_mb * 1024 * 1024
        self.max_age_ns = int(settings.archive_roll_s * 1e9)
        self.segments: dict[str, Segment] = {}
        self.marks: dict[str, str | None] = {}
        self.seen: dict[str, str] = {}  # the last id held in a segment or archived
        self.cursors: dict[str, str] = {}

    async def start(self) -> None:
        """Create the group on each stream and load the watermarks; read pending entries first."""
        for name in self.streams:
            await ensure_group(self.redis, name, GROUP_ARCHIVE)
            mark: Any = await self.redis.get(archive_watermark(name))
            self.marks[name] = None if mark is None else text_of(mark)
            self.cursors[name] = "0"

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(base_s=0.2, cap_s=5.0, healthy_after_s=5.0)
        started = False
        while not stop.is_set():
            try:
                if not started:
                    await self.start()
                    started = True
                await self.step(stop)
            except REDIS_ERRORS as exc:
                self.stats.redis_errors += 1
                log.warning("archive: Redis %s; retrying", redis_reason(exc))
                for name in self.streams:  # read pending entries again; ``seen`` skips held ones
                    self.cursors[name] = "0"
                await wait_stop(stop, backoff.next_delay_s())
        await self.flush(stop_now=True)

    async def step(self, stop: asyncio.Event) -> None:
        """Read one batch, hold its entries, roll the segments that are due."""
        catching_up = any(c != ">" for c in self.cursors.values())
        reply: Any = await xreadgroup_streams(
            self.redis, GROUP_ARCHIVE, CONSUMER, self.cursors,
            count=self.settings.batch_size, block=None if catching_up else self.block_ms,
        )  # fmt: skip
        acks: dict[str, list[str]] = {}
        delivered = set()
        for raw_name, entries in reply or []:
            name = text_of(raw_name)
            delivered.add(name)
            self._hold(name, entries, acks)
        for name, cursor in self.cursors.items():
            if cursor != ">" and name not in delivered:
                self.cursors[name] = ">"  # no pending entry left: new ones from now on
        for name, ids in acks.items():
            await self._ack(name, ids)
        await self.flush()

    def _hold(self, name: str, entries: list[Any], acks: dict[str, list[str]]) -> None:
        if not entries:
            if self.cursors[name] != ">":
                self.cursors[name] = ">"
            return
        mark, seen = self.marks[name], self.seen.get(name)
        venue, source = self.streams[name]
        # Entries delivered anew (">") come after everything delivered before; only pending
        # ones read again (after a restart or a Redis error) may be archived or held already.
        again = self.cursors[name] != ">"
        mark_key = entry_key(mark) if again and mark is not None else None
        seen_key = entry_key(seen) if again and seen is not None else None
        for raw_id, fields in entries:
            entry_id = text_of(raw_id)
            key = entry_key(entry_id) if again else None
            if key is not None and mark_key is not None and key <= mark_key:
                acks.setdefault(name, []).append(entry_id)  # archived before a crash, not acked
                self.stats.reacked += 1
            elif key is not None and seen_key is not None and key <= seen_key:
                pass  # already held in the open segment (read again after a Redis error)
            elif not fields:  # pending, but trimmed away before it was archived
                log.warning(
                    "archive: entry %s of %s was gone before it was archived", entry_id, name
                )
                acks.setdefault(name, []).append(entry_id)
            else:
                segment = self.segments.get(name)
                if segment is None:
                    segment = self.segments[name] = Segment(name, venue, source, self.clock())
                rows = segment.entries
                segment.add(entry_id, _decoded(fields))
                self.stats.open_entries += segment.entries - rows  # a packed entry: its frames
                seen = entry_id
            if self.cursors[name] != ">":
                self.cursors[name] = entry_id
        if seen is not None:
            self.seen[name] = seen

    async def flush(self, *, stop_now: bool = False) -> None:
        """Roll every segment that is due (every one when stopping)."""
        now = self.clock()
        for name in list(self.segments):
            segment = self.segments[name]
            if segment.entries and (stop_now or segment.due(now, self.max_bytes, self.max_age_ns)):
                await self.roll(name, segment)

    async def roll(self, name: str, segment: Segment) -> None:
        """Write, record, acknowledge: the order a restart relies on."""
        undo_segment(self.root, name)  # an earlier attempt that failed half-way
        try:
            files = await asyncio.to_thread(write_segment, self.root, segment)
        except OSError as exc:
            self.stats.write_errors += 1
            undo_segment(self.root, name)
            log.warning("archive: cannot write %s: %s; keeping it, will retry", name, exc)
            return
        self.on_step("written", name)
        await self.redis.set(archive_watermark(name), segment.last_id)
        self.marks[name] = segment.last_id
        self.on_step("recorded", name)
        await self._ack(name, segment.ids())
        self.on_step("acked", name)
        finish_segment(self.root, name)
        del self.segments[name]
        self.stats.entries += segment.entries
        self.stats.open_entries -= segment.entries
        self.stats.files += len(files)
        self.stats.segments += 1

    async def _ack(self, name: str, ids: list[str]) -> None:
        for n in range(0, len(ids), ACK_CHUNK):
            await self.redis.xack(name, GROUP_ARCHIVE, *ids[n : n + ACK_CHUNK])


async def _relay(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    halt.set()


def _no_step(step: str, stream: str) -> None:
    return None


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    on_step: Step | None = None,
    block_ms: int = 500,
    stats: ArchiveStats | None = None,
) -> None:
    """Archive every archived stream of ``settings`` until ``stop``; write open segments then.

    ``on_step(step, stream)`` is called after each step of a roll (``written``, ``recorded``,
    ``acked``); ``clock`` gives the time in ns (segment ages).
    """
    load_parquet()
    root = archive_root(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    own_redis = redis is None
    client = connect_redis(settings.redis_url) if redis is None else redis
    stats = stats if stats is not None else ArchiveStats()
    try:
        marks: dict[str, str | None] = {}
        for name in intent_streams(root):
            mark: Any = await client.get(archive_watermark(name))
            marks[name] = None if mark is None else text_of(mark)
        stats.removed_files += recover(root, marks)
        groups = [
            _Group(client, settings, streams, root, stats, clock or time.time_ns,
                   on_step or _no_step, block_ms)
            for streams in archived_streams(settings)
        ]  # fmt: skip
        health = HealthReporter(
            client, settings.keys, SERVICE, settings.instance,
            interval_s=settings.health_interval_s, stats=stats.snapshot,
        )  # fmt: skip
        health.status = "ok"
        health_stop = asyncio.Event()
        health_task = asyncio.create_task(health.run(health_stop))
        log.info("archive started", extra={"root": str(root), "groups": len(groups)})
        # ``halt`` ends every group's loop on ``stop`` or when one group fails: the task group
        # cancels the others then, but on Python 3.11 a cancellation that meets a wait finishing
        # at the same moment is lost (``asyncio.wait_for``), and a group would read on forever.
        halt = asyncio.Event()
        relay = asyncio.create_task(_relay(stop, halt))

        async def guarded(group: _Group) -> None:
            try:
                await group.run(halt)
            except BaseException:
                halt.set()
                raise

        try:
            async with asyncio.TaskGroup() as tasks:
                for group in groups:
                    tasks.create_task(guarded(group))
        except BaseException:
            health_task.cancel()
            raise
        finally:
            relay.cancel()
        health_stop.set()
        await health_task
        log.info("archive stopped", extra=stats.snapshot())
    finally:
        if own_redis:
            await client.aclose()
