"""Integration tests of the ingestor's batch writer against fakeredis."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import fakeredis
import pytest

from tests.rawread import rawframes
from tickpipe.common.backoff import Backoff
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
        seqs = [RawFrame.from_fields(f).seq for _, f in await redis.xrange(STREAM)]
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
        ok = [RawFrame.from_fields(f).seq for _, f in await redis.xrange(STREAM)]
        late = [RawFrame.from_fields(f).seq for _, f in await redis.xrange(other)]
        return ok, late, stats

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        ok, late, stats = asyncio.run(scenario())
    assert ok == [1, 2, 3]  # written once, not again with each retry
    assert late == [4]
    assert stats.entries_written == 4 and stats.redis_up
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

    async def write(self, count: int) -> None:
        self.task = asyncio.create_task(self.writer.run())
        for seq in range(1, count + 1):
            self.queue.put_nowait(item(seq))
        deadline = time.monotonic() + 5
        while await self.redis.xlen(STREAM) < count:
            assert time.monotonic() < deadline, f"fewer than {count} entries written"
            await asyncio.sleep(0.01)

    async def outage(self, queued: int) -> None:
        """Take Redis away and let the writer fail on ``item(queued)``."""
        self.server.connected = False
        self.queue.put_nowait(item(queued))
        deadline = time.monotonic() + 5
        while self.stats.redis_up:
            assert time.monotonic() < deadline, "the writer never noticed the outage"
            await asyncio.sleep(0.01)

    def cut_tail(self, count: int) -> None:
        """Drop the newest ``count`` entries, as an AOF cut does (synchronously: nothing runs)."""
        sync = fakeredis.FakeRedis(server=self.server)
        self.server.connected = True
        newest = sync.xrevrange(STREAM, count=count)
        sync.xdel(STREAM, *[entry_id for entry_id, _ in newest])

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
        await rig.write(10)
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
        await rig.write(5)
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
