"""Integration tests of the ingestor's batch writer against fakeredis."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import fakeredis
import pytest

from tests.rawread import raw_frames_sync, rawframes
from tests.waits import until, xlen_at_least
from tickpipe.common.backoff import Backoff
from tickpipe.common.contract import base_entry_id
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.writer import BatchWriter, IngestorStats, Item, WriteQueue

STREAM = "w:{binance:0}:raw"


def item(seq: int, stream: str = STREAM) -> Item:
    return stream, RawFrame("ws", "binance", "c1", seq, 1_000 + seq, f'{{"n":{seq}}}', "market")


def test_batches_take_what_is_queued_up_to_the_cap() -> None:
    async def scenario() -> tuple[IngestorStats, list[int]]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        queue: WriteQueue = asyncio.Queue()
        for seq in range(1, 1001):
            queue.put_nowait(item(seq))
        queue.put_nowait(None)
        stats = IngestorStats()
        await asyncio.wait_for(BatchWriter(redis, queue, stats, batch_max=300).run(), 10)
        seqs = [f.seq for f in rawframes(await redis.xrange(STREAM))]
        return stats, seqs

    stats, seqs = asyncio.run(scenario())
    assert seqs == list(range(1, 1001))
    assert stats.batches_written == 4  # 300 + 300 + 300 + 100, one round trip each
    assert stats.entries_written == 1000


def test_entries_redis_refuses_are_retried_until_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = "w:{binance}:private-raw"

    async def scenario() -> tuple[list[int], list[int], IngestorStats]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        await redis.set(other, "not a stream")  # XADD answers WRONGTYPE
        queue: WriteQueue = asyncio.Queue()
        for seq in range(1, 4):
            queue.put_nowait(item(seq))
        queue.put_nowait(item(4, other))
        queue.put_nowait(item(5, other))  # 4 and 5 share an entry: refused (and retried) whole
        queue.put_nowait(None)
        stats = IngestorStats()
        writer = BatchWriter(redis, queue, stats, retry_backoff=Backoff(base_s=0.01, cap_s=0.02))
        task = asyncio.create_task(writer.run())
        deadline = time.monotonic() + 5
        while writer.backoff.attempt < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert not task.done() and stats.redis_up is False
        await redis.delete(other)
        await asyncio.wait_for(task, 5)
        ok = [f.seq for f in rawframes(await redis.xrange(STREAM))]
        late = [f.seq for f in rawframes(await redis.xrange(other))]
        assert await redis.xlen(other) == 1  # 4 and 5 in one (packed) entry
        return ok, late, stats

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        ok, late, stats = asyncio.run(scenario())
    assert ok == [1, 2, 3]  # written once, not again with each retry
    assert late == [4, 5]
    assert stats.entries_written == 5 and stats.redis_up
    assert sum("Redis cannot take it now" in r.getMessage() for r in caplog.records) == 1


Calls = list[tuple[str, list[int], bool]]


class LossRig:
    """A writer on fakeredis that has written ``seq`` 1..n, recording what it reports lost."""

    def __init__(self) -> None:
        self.server = fakeredis.FakeServer()
        self.redis = fakeredis.FakeAsyncRedis(server=self.server)
        self.queue: WriteQueue = asyncio.Queue()
        self.stats = IngestorStats()
        self.calls: Calls = []
        self.writer = BatchWriter(
            self.redis, self.queue, self.stats, retry_backoff=Backoff(base_s=0.01, cap_s=0.02),
            on_lost=self.on_lost,
        )  # fmt: skip
        self.task: asyncio.Task[None] | None = None

    def on_lost(self, stream: str, frames: list[RawFrame], whole: bool) -> list[Item]:
        self.calls.append((stream, [f.seq for f in frames], whole))
        marker = RawFrame("marker", "binance", "", 0, 1, '{"event":"redis_lost"}', "market")
        return [(stream, marker)]

    async def write(self, *groups: int) -> None:
        """Write ``seq`` 1..n in ``groups`` of frames, one batch (and so one entry) per group."""
        self.task = asyncio.create_task(self.writer.run())
        count = 0
        for n, size in enumerate(groups, 1):
            for seq in range(count + 1, count + size + 1):
                self.queue.put_nowait(item(seq))
            count += size
            await until(lambda c=count: xlen_at_least(self.redis, STREAM, c), 30, f"{count} frames")
            assert await self.redis.xlen(STREAM) == n  # the group's frames share one entry

    async def outage(self, queued: int) -> None:
        """Take Redis away and let the writer fail on ``item(queued)``."""
        self.server.connected = False
        self.queue.put_nowait(item(queued))
        deadline = time.monotonic() + 5
        while self.stats.redis_up:
            assert time.monotonic() < deadline, "the writer never noticed the outage"
            await asyncio.sleep(0.01)

    def cut_tail(self, count: int) -> None:
        """Drop the newest ``count`` frames, as an AOF cut does (synchronously: nothing runs).

        A cut drops whole entries: ``count`` must end on an entry's boundary (a packed entry
        holds several frames).
        """
        sync = fakeredis.FakeRedis(server=self.server)
        self.server.connected = True
        frames = raw_frames_sync(sync, STREAM)
        cut = {base_entry_id(frame) for frame, _ in frames[len(frames) - count :]}
        kept = {base_entry_id(frame) for frame, _ in frames[: len(frames) - count]}
        assert not cut & kept, f"the newest {count} frames do not end on an entry's boundary"
        sync.xdel(STREAM, *cut)

    async def finish(self, *more: int) -> list[tuple[str, int]]:
        for seq in more:
            self.queue.put_nowait(item(seq))
        self.queue.put_nowait(None)
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)
        return [(f.kind, f.seq) for f in await entries_of(self.redis)]


def test_after_an_outage_the_frames_redis_lost_are_found_before_anything_new_is_written() -> None:
    rig = LossRig()

    async def scenario() -> list[tuple[str, int]]:
        await rig.write(7, 3)  # two entries: frames 1..7, then 8..10
        await rig.outage(11)
        rig.cut_tail(3)  # Redis comes back without 8, 9, 10
        return await rig.finish(12)

    got = asyncio.run(scenario())
    assert rig.calls == [(STREAM, [8, 9, 10], False)]
    assert got == [
        *[("ws", n) for n in range(1, 8)],
        ("marker", 0),  # what Redis lost is recorded before anything new
        ("ws", 11),
        ("ws", 12),
    ]
    assert rig.stats.frames_lost_by_redis == 3 and rig.stats.redis_losses == 1


def test_a_restart_that_no_write_saw_is_found_when_the_connection_is_made_again() -> None:
    rig = LossRig()

    async def scenario() -> list[tuple[str, int]]:
        await rig.write(3, 2)  # two entries: frames 1..3, then 4, 5
        rig.cut_tail(2)
        await rig.redis.connection_pool.disconnect()  # Redis went away and came back
        return await rig.finish(6)

    got = asyncio.run(scenario())
    assert rig.calls == [(STREAM, [4, 5], False)]
    assert got == [("ws", 1), ("ws", 2), ("ws", 3), ("marker", 0), ("ws", 6)]
    assert rig.stats.redis_outages == 0  # no write ever failed


def test_redis_that_lost_everything_written_is_reported_as_a_whole_loss() -> None:
    rig = LossRig()

    async def scenario() -> list[tuple[str, int]]:
        await rig.write(3)
        await rig.outage(4)
        rig.cut_tail(3)  # a Redis without persistence restarted empty
        return await rig.finish()

    got = asyncio.run(scenario())
    assert rig.calls == [(STREAM, [1, 2, 3], True)]
    assert got == [("marker", 0), ("ws", 4)]


def test_nothing_is_reported_when_redis_kept_everything() -> None:
    rig = LossRig()

    async def scenario() -> list[tuple[str, int]]:
        await rig.write(3)
        await rig.outage(4)
        rig.server.connected = True
        await rig.redis.connection_pool.disconnect()
        return await rig.finish(5)

    got = asyncio.run(scenario())
    assert rig.calls == [] and rig.stats.frames_lost_by_redis == 0
    assert got == [("ws", n) for n in range(1, 6)]


async def entries_of(redis: Any) -> list[RawFrame]:
    return rawframes(await redis.xrange(STREAM))


def test_the_frames_kept_for_the_check_are_bounded_by_count_and_bytes() -> None:
    writer = BatchWriter(
        fakeredis.FakeAsyncRedis(), asyncio.Queue(), IngestorStats(), written_kept=5,
        written_kept_bytes=100,
    )  # fmt: skip
    writer._appended([item(n) for n in range(1, 9)])  # 7 bytes of data each
    assert [f.seq for _, f in writer.written] == [4, 5, 6, 7, 8]
    page = (STREAM, RawFrame("rest", "binance", "rest/1", 1, 1, "x" * 90, "trades_backfill"))
    writer._appended([page])  # 35 + 90 bytes: the oldest go until 100 or fewer are left
    assert [f.seq for _, f in writer.written] == [8, 1] and writer._written_bytes == 97
