"""Run the processor: own partitions through leases, read raw entries, write outputs atomically.

For every partition (and the venue's private stream) one lane loop runs:

1. **Stand by** until the lease key is free, then take it with ``SET NX PX`` (value = instance).
2. **Take over**: load the checkpoint, ``XAUTOCLAIM`` every pending entry of the consumer group to
   this member, process this member's pending entries (``XREADGROUP`` id ``0``), then new ones
   (``>``). Every read is fenced: the lease is checked in the same atomic step that reads,
   without blocking (:mod:`processor.wire`), so a member receives nothing once its lease is
   gone, even if it was frozen while the read was on its way. An idle member waits with a plain
   ``XREAD BLOCK`` (which claims nothing) and then reads. Pending entries are processed whatever
   their id: what was already committed is recognised by its content (trade ids, quote update
   ids), never by its entry id.
3. **Commit** each batch atomically in one fenced Lua call (:mod:`processor.wire`): it checks that
   the lease still names this member, then XADDs the outputs, SETs the checkpoint, XACKs the
   inputs and PEXPIREs the lease; a member that lost its lease writes nothing. The next batch
   is read before this one is processed and a commit is written without waiting for its reply,
   so Redis works while the member computes (:mod:`processor.link`); a commit is only sent once
   the one before it is confirmed.
4. Renew the lease every ``renew_s`` while idle; a member that could not renew in time stops
   reading on its own (self-fencing) before anyone else can take the lease.

The owner of a lane also trims the lane's streams every ``retention_s`` by the retention
policy (:mod:`processor.retention`), never past what a consumer group has not read.

Redis unreachable or refusing commands (``OOM`` at maxmemory, ``BUSY``...) is back-pressure: a
refused commit acknowledges nothing, and the lane waits and reads the same entries again; each
lane logs the outage rate-limited with the server's text (:mod:`common.backpressure`).

``stop`` finishes the current batch, releases the leases and removes the health key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.backoff import Backoff
from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.contract import base_entry_id, is_entry_id
from tickpipe.common.errors import DecodeError
from tickpipe.common.health import HealthReporter
from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.redis_io import REDIS_ERRORS, connect_redis, ensure_group
from tickpipe.common.redis_link import RedisLink
from tickpipe.common.schema import text_of
from tickpipe.common.settings import Settings
from tickpipe.common.stopping import wait_stop
from tickpipe.processor.lanes import Lane, PartitionLane, PrivateLane
from tickpipe.processor.link import Entries, LeaseLost, Link, Pipe
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.trimmer import Retention, trim_streams

__all__ = ["SERVICE", "read_count", "run"]

SERVICE = "processor"
log = logging.getLogger("tickpipe.processor")
#: Warning lines (gaps, resolutions, repairs) logged per batch; the rest are counted in one line.
_WARNINGS_PER_BATCH = 20
#: Order updates read at most per batch for the strategies that follow their own orders.
OWN_UPDATES_PAGE = 1000


def read_count(batch_size: int, batch: Entries | None, count: int) -> int:
    """Return how many entries to read next so that a batch holds about ``batch_size`` frames.

    A raw entry may hold several frames (:mod:`common.contract`); the last batch read tells how
    many an entry held on average. An empty batch keeps ``count``.
    """
    if not batch:
        return count
    entries = sum(1 for entry_id, _ in batch if is_entry_id(entry_id))
    if not entries:
        return count
    return max(1, min(batch_size, batch_size * entries // len(batch)))


class _Stats:
    """Counters shown in the health record."""

    def __init__(self) -> None:
        self.totals = dict.fromkeys(
            ("frames", "trades", "bars", "signals", "order_updates", "dead_letters"), 0
        )
        self.owned: set[str] = set()
        self.gauges: dict[str, dict[str, int]] = {}  # lane -> its levels after its last commit
        self.partition_names: set[str] = set()
        self.last_batch_size = 0
        self._rate_at = (time.monotonic(), 0)
        self.frames_per_s = 0.0
        self.retention = Retention()
        #: The member's seam to Redis (its ``scripts_refused`` is a health figure).
        self.seam: RedisLink | None = None

    def add(self, frames: int, stats: dict[str, int]) -> None:
        self.totals["frames"] += frames
        for name, value in stats.items():
            self.totals[name] = self.totals.get(name, 0) + value
        self.last_batch_size = frames

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        then, frames_then = self._rate_at
        if now - then >= 0.5:
            self.frames_per_s = round((self.totals["frames"] - frames_then) / (now - then), 1)
            self._rate_at = (now, self.totals["frames"])
        return {
            **self.totals,
            "open_gaps": sum(g.get("open_gaps", 0) for g in self.gauges.values()),
            "strategy_errors": sum(g.get("strategy_errors", 0) for g in self.gauges.values()),
            "strategies_disabled": sum(
                g.get("strategies_disabled", 0) for g in self.gauges.values()
            ),
            "frames_per_s": self.frames_per_s,
            "partitions_owned": len(self.owned & self.partition_names),
            "owned": sorted(self.owned),
            "last_batch_size": self.last_batch_size,
            "retention_trimmed": self.retention.trimmed,
            "retention_blocked": self.retention.blocked,
            "retention_lookups": self.retention.lookups,
            "retention_alarms": sorted(self.retention.alarms),
            "scripts_refused": self.seam.scripts_refused if self.seam else 0,
        }


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that a library swallowed.

    redis-py can lose a ``CancelledError`` that arrives mid-command (redis/redis-py#2028; seen
    with 8.1 and fakeredis), which would leave a "killed" lane running. Every lane loop calls this
    once per iteration.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(eq=False)
class _Runner:
    """Run the lane loops of one member."""

    settings: Settings
    redis: aioredis.Redis
    stop: asyncio.Event
    clock: Callable[[], int]
    _: KW_ONLY
    lease_ms: int
    renew_s: float
    retry_s: float
    block_ms: int
    retention_s: float
    direct: InitVar[bool] = True
    instance: str = field(init=False)
    stats: _Stats = field(init=False, default_factory=_Stats)
    link: Link = field(init=False)

    def __post_init__(self, direct: bool) -> None:
        self.instance = self.settings.instance
        self.link = Link(self.redis, self.instance, self.lease_ms, direct=direct)
        self.stats.seam = self.link.seam

    # -- lease -----------------------------------------------------------------------------------
    async def _acquire(self, lane: Lane) -> bool:
        if await self.redis.set(lane.lease_key, self.instance, nx=True, px=self.lease_ms):
            return True
        # A lease under our own name is a previous life of this member (crash, then restart).
        return await self.link.renew(lane)

    # -- lane loop -------------------------------------------------------------------------------
    async def run_lane(self, lane: Lane) -> None:
        """Stand by, own, process and hand over ``lane`` until ``stop`` is set."""
        backoff = Backoff(base_s=0.1, cap_s=5.0, healthy_after_s=5.0)
        with RedisOutage(log, f"processor lane {lane.name}") as outage:
            while not self.stop.is_set():
                _raise_if_cancelled()
                started = time.monotonic()
                try:
                    if not await self._acquire(lane):
                        outage.recovered()
                        await wait_stop(self.stop, self.retry_s)
                        continue
                    await self._own(lane, outage)
                except LeaseLost:
                    log.warning("lease lost; standing by", extra={"lane": lane.name})
                except REDIS_ERRORS as exc:  # OOM, BUSY, unreachable...: nothing was acked
                    backoff.connection_ended(time.monotonic() - started)
                    outage.failed(exc)
                    await wait_stop(self.stop, backoff.next_delay_s())
                finally:
                    self.stats.owned.discard(lane.name)
                    self.stats.gauges.pop(lane.name, None)

    async def _own(self, lane: Lane, outage: RedisOutage) -> None:
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        self.stats.owned.add(lane.name)
        await ensure_group(self.redis, lane.stream, GROUP_PROCESSOR)
        blob: Any = await self.redis.get(lane.checkpoint_key)
        try:
            lane.load(blob)
        except DecodeError as exc:
            log.error("checkpoint unreadable, starting afresh: %s", exc, extra={"lane": lane.name})
            lane.load(None)
        claimed = await self._claim(lane)
        log.info(
            "lease taken",
            extra={"lane": lane.name, "claimed": claimed, "consumer": self.instance},
        )
        outage.recovered()
        cursor = "0"  # this member's pending entries (after the cursor id), then new ones: ">"
        count = self.settings.batch_size
        hand: Entries | None = None  # a batch read and not yet processed
        trimmed_at = loop.time()
        async with self.link.pipe(lane) as pipe:
            while not (self.stop.is_set() and not hand):
                _raise_if_cancelled()
                now = loop.time()
                if now - trimmed_at >= self.retention_s:
                    trimmed_at = now
                    await trim_streams(
                        self.redis,
                        lane.retained,
                        self.settings.retention_maxlen,
                        self.stats.retention,
                    )
                # A commit in flight renews the lease itself (and a WATCH would race with it).
                if now - renewed_at >= self.renew_s and not pipe.busy:
                    if not await self.link.renew(lane):
                        raise LeaseLost
                    renewed_at = now
                if loop.time() - renewed_at > self.lease_ms / 1000 * 0.6:
                    raise LeaseLost  # could not renew in time: someone else may own it soon
                if not hand:
                    await pipe.send_read(cursor, count)
                    hand, renewed_at = await self._collect(lane, pipe, renewed_at)
                    count = read_count(self.settings.batch_size, hand, count)
                    if not hand:
                        if cursor != ">":
                            cursor = ">"
                        elif not self.stop.is_set():
                            renewed_at = await self._idle(lane, pipe, renewed_at)
                        continue
                batch, hand = hand, None
                pending = cursor != ">"  # claimed or left by an earlier life: check by content
                if pending:
                    cursor = base_entry_id(batch[-1][0])
                ahead = not self.stop.is_set()
                if ahead:  # Redis reads the next batch while this one is processed
                    await pipe.send_read(cursor, count)
                await self._own_updates(lane)
                commit = lane.process(batch, self.clock(), pending=pending)
                hand, renewed_at = await self._collect(lane, pipe, renewed_at)
                count = read_count(self.settings.batch_size, hand, count)
                if ahead and not hand and cursor != ">":
                    cursor = ">"
                await pipe.send_commit(commit, loop.time())
            _, renewed_at = await self._collect(lane, pipe, renewed_at)
        await self.link.release(lane, REDIS_ERRORS)

    async def _own_updates(self, lane: Lane) -> None:
        """Read the order updates and order events a partition's strategies follow."""
        some: Any = lane  # a partition lane (processor.own_orders); the private lane has none
        if not hasattr(some, "updates_from"):
            return
        start = some.updates_from()
        if start is not None:
            if some.updates:
                start = some.updates[-1][0]
            page: Any = await self.redis.xrange(
                some.updates_key, min="(" + start, count=OWN_UPDATES_PAGE
            )
            for line in some.offer_updates(page):
                log.warning("%s", line, extra={"lane": lane.name})
        start = some.order_events_from()
        if start is not None:
            page = await self.redis.xrange(some.orders_key, min="(" + start, count=OWN_UPDATES_PAGE)
            some.offer_order_events(page)

    async def _idle(self, lane: Lane, pipe: Pipe, renewed_at: float) -> float:
        """Wait up to ``block_ms`` for a new entry without claiming it; return the renewal time."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        await pipe.send_wait(pipe.newest, self.block_ms)
        _, renewed_at = await self._collect(lane, pipe, renewed_at)
        if not pipe.woken and loop.time() - began < self.block_ms / 2000:
            await wait_stop(self.stop, self.block_ms / 1000)  # the server did not block
        return renewed_at

    async def _collect(
        self, lane: Lane, pipe: Pipe, renewed_at: float
    ) -> tuple[Entries | None, float]:
        """Collect the pipe's replies; count confirmed commits; return entries and renewal time."""
        entries, confirmed = await pipe.collect()
        for commit, sent_at in confirmed:
            renewed_at = sent_at  # the commit's PEXPIRE ran after it was sent
            self.stats.add(commit.frames, commit.stats)
            if commit.gauges:
                self.stats.gauges[lane.name] = commit.gauges
            for line in commit.warnings[:_WARNINGS_PER_BATCH]:
                log.warning("%s", line, extra={"lane": lane.name})
            if len(commit.warnings) > _WARNINGS_PER_BATCH:
                log.warning(
                    "%d more warnings in this batch",
                    len(commit.warnings) - _WARNINGS_PER_BATCH,
                    extra={"lane": lane.name},
                )
            if commit.stats.get("dead_letters"):
                log.warning(
                    "frames sent to dead letters",
                    extra={"lane": lane.name, "count": commit.stats["dead_letters"]},
                )
        return entries, renewed_at

    async def _claim(self, lane: Lane) -> int:
        """Move every pending entry of the group to this member; return how many moved."""
        start: bytes | str = "0-0"
        claimed = 0
        while True:
            _raise_if_cancelled()
            reply = await self.redis.xautoclaim(
                lane.stream,
                GROUP_PROCESSOR,
                self.instance,
                min_idle_time=0,
                start_id=start,
                count=self.settings.batch_size,
            )
            cursor, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else []
            claimed += len(entries)
            if deleted:
                log.error(
                    "pending entries were deleted before processing",
                    extra={"lane": lane.name, "count": len(deleted)},
                )
            if text_of(cursor) == "0-0":
                return claimed
            start = cursor


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    lease_ms: int = 5000,
    renew_s: float | None = None,
    retry_s: float | None = None,
    block_ms: int = 150,
    retention_s: float = 5.0,
    direct: bool = True,
) -> None:
    """Process every partition of ``settings`` and the venue's private stream until ``stop``.

    ``lease_ms`` is the lease period; the lease is renewed every ``renew_s`` (default 30 % of it)
    and a member standing by retries every ``retry_s`` (default 20 % of it). The streams of each
    owned lane are trimmed every ``retention_s``. ``direct=False`` sends every command through
    redis-py even on a single-server client (the path a cluster client always takes).
    """
    build_strategies(settings)  # a strategy mistake stops the stage before Redis (exit 2)
    own_redis = redis is None
    client = connect_redis(settings.redis_url) if redis is None else redis
    runner = _Runner(
        settings,
        client,
        stop,
        clock or time.time_ns,
        lease_ms=lease_ms,
        renew_s=lease_ms * 0.3 / 1000 if renew_s is None else renew_s,
        retry_s=lease_ms * 0.2 / 1000 if retry_s is None else retry_s,
        block_ms=block_ms,
        retention_s=retention_s,
        direct=direct,
    )
    lanes: list[Lane] = [PartitionLane(settings, p) for p in settings.partitions()]
    runner.stats.partition_names = {lane.name for lane in lanes}
    lanes.append(PrivateLane(settings, settings.venue))
    health = HealthReporter(
        client,
        settings.keys,
        SERVICE,
        settings.instance,
        interval_s=settings.health_interval_s,
        stats=runner.stats.snapshot,
    )
    health.status = "ok"
    health_stop = asyncio.Event()
    health_task = asyncio.create_task(health.run(health_stop))
    log.info("processor started", extra={"lanes": [lane.name for lane in lanes]})
    try:
        async with asyncio.TaskGroup() as group:
            for lane in lanes:
                group.create_task(runner.run_lane(lane))
    except BaseException:
        health_task.cancel()  # killed or failed: leave the health key to expire
        raise
    else:
        health_stop.set()
        await health_task
    finally:
        if own_redis:
            await client.aclose()
    log.info("processor stopped", extra=runner.stats.snapshot())
