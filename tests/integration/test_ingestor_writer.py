"""Integration tests of the ingestor's batch writer against fakeredis."""

from __future__ import annotations

import asyncio
import logging
import time

import fakeredis
import pytest

from common.backoff import Backoff
from common.schema import RawFrame
from ingestor.writer import BatchWriter, IngestorStats, Item, WriteQueue

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
    assert sum("cannot write to Redis" in r.getMessage() for r in caplog.records) == 1
