"""Integration tests of the spill journal and the writer's spill and drain path."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ingestor_support import (
    RAW,
    entries,
    fast_backoff,
    fast_ingestor,
    redis_down,
    running,
    sending_trades,
    settings_for,
    venue,
)
from tests.waits import until, xlen_at_least
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.journal import Journal, JournalLocked
from tickpipe.ingestor.shell import Ingestor
from tickpipe.ingestor.writer import BatchWriter, IngestorStats, Item, WriteQueue

STREAM = "j:{binance:0}:raw"


def item(seq: int, stream: str = STREAM) -> Item:
    return stream, RawFrame("ws", "binance", "c1", seq, 1_000 + seq, f'{{"n":{seq}}}', "market")


def read_all(journal: Journal) -> list[Item]:
    journal.roll()
    out: list[Item] = []
    for segment in journal.closed_segments():
        for chunk, offset in journal.read(segment, 7):
            out.extend(chunk)
            journal.consumed(segment, offset)
        journal.remove(segment)
    return out


def test_journal_keeps_order_across_segments_and_removes_what_is_drained(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10_000_000)
    assert journal.empty()
    assert journal.append([item(n) for n in range(1, 51)]) == 50
    journal.roll()
    journal.append([item(n) for n in range(51, 101)])
    assert not journal.empty() and len(list(tmp_path.glob("*.jnl"))) == 2
    got = read_all(journal)
    assert [frame.seq for _, frame in got] == list(range(1, 101))
    assert got[0] == item(1)
    assert journal.empty() and not list(tmp_path.glob("*.jnl"))
    journal.close()


def test_a_partly_drained_segment_resumes_after_its_consumed_offset(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=10_000_000)
    journal.append([item(n) for n in range(1, 21)])
    journal.roll()
    segment = journal.closed_segments()[0]
    chunk, offset = next(iter(journal.read(segment, 8)))
    journal.consumed(segment, offset)
    rest = [frame.seq for c, _ in journal.read(segment, 100) for _, frame in c]
    assert [f.seq for _, f in chunk] == list(range(1, 9)) and rest == list(range(9, 21))
    journal.close()


def test_the_disk_cap_drops_frames_and_owes_a_gap_marker(tmp_path: Path) -> None:
    probe = Journal(tmp_path / "probe", max_bytes=10_000_000)
    probe.append([item(1)])
    one = probe.size
    probe.close()
    journal = Journal(
        tmp_path / "capped", max_bytes=one * 10 + 5
    )  # 9 short records, then longer ones
    kept = journal.append([item(n) for n in range(1, 31)])
    assert kept == 10 and journal.dropped_total == 20
    gaps = journal.take_gaps(now_ns=5)
    assert len(gaps) == 1 and gaps[0][0] == STREAM
    gap = json.loads(gaps[0][1].data)
    assert gap["event"] == "gap" and gap["frames_dropped"] == 20
    assert (gap["first_ts_recv"], gap["last_ts_recv"]) == (1_011, 1_030)
    journal.close()


def test_a_second_ingestor_cannot_share_the_journal(tmp_path: Path) -> None:
    first = Journal(tmp_path, max_bytes=1000)
    with pytest.raises(JournalLocked):
        Journal(tmp_path, max_bytes=1000)
    first.close()
    Journal(tmp_path, max_bytes=1000).close()


def spilling_writer(
    redis: Any, tmp_path: Path, *, queue_max: int, journal_bytes: int
) -> tuple[WriteQueue, IngestorStats, Journal, BatchWriter]:
    """Return a batch writer over a ``queue_max`` queue that spills into a journal."""
    queue: WriteQueue = asyncio.Queue(maxsize=queue_max)
    stats = IngestorStats()
    journal = Journal(tmp_path, max_bytes=journal_bytes)
    retry = Backoff(base_s=0.01, cap_s=0.05)
    writer = BatchWriter(redis, queue, stats, journal=journal, retry_backoff=retry)
    return queue, stats, journal, writer


def test_writer_spills_beyond_the_queue_and_drains_in_order(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int], IngestorStats]:
        server, redis = redis_down()
        queue, stats, journal, writer = spilling_writer(
            redis, tmp_path, queue_max=20, journal_bytes=10_000_000
        )
        task = asyncio.create_task(writer.run())
        for seq in range(1, 1001):  # 50 times what the queue holds; the producer never blocks long
            await asyncio.wait_for(queue.put(item(seq)), 2)
        assert writer.spilling and stats.journal_spilled > 900
        server.connected = True
        for seq in range(1001, 1101):  # newer frames while the journal drains
            await queue.put(item(seq))
        await until(lambda: xlen_at_least(redis, STREAM, 1100))
        await queue.put(None)
        await asyncio.wait_for(task, 5)
        journal.close()
        seqs = [f.seq for f in await entries(redis, STREAM)]
        return seqs, stats

    seqs, stats = asyncio.run(scenario())
    assert seqs == list(range(1, 1101))
    assert stats.redis_up and stats.journal_dropped == 0
    assert not list(tmp_path.glob("*.jnl"))


def test_frames_beyond_the_disk_cap_become_a_gap_marker_when_redis_is_back(
    tmp_path: Path,
) -> None:
    async def scenario() -> list[RawFrame]:
        server, redis = redis_down()
        queue, stats, journal, writer = spilling_writer(
            redis, tmp_path, queue_max=10, journal_bytes=4000
        )
        task = asyncio.create_task(writer.run())
        for seq in range(1, 501):
            await asyncio.wait_for(queue.put(item(seq)), 2)
        await until(lambda: stats.journal_dropped + stats.journal_spilled >= 495)
        server.connected = True
        await until(lambda: stats.redis_up and not writer.spilling)
        await queue.put(None)
        await asyncio.wait_for(task, 5)
        journal.close()
        return await entries(redis, STREAM)

    got = asyncio.run(scenario())
    frames = [f for f in got if f.kind == "ws"]
    gaps = [json.loads(f.data) for f in got if f.kind == "marker"]
    assert len(gaps) == 1 and gaps[0]["event"] == "gap"
    assert len(frames) + gaps[0]["frames_dropped"] == 500
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and seqs[0] == 1


def test_ingestor_stopped_during_an_outage_keeps_the_journal_and_drains_it_next_run(
    tmp_path: Path,
) -> None:
    total = 300

    handler = sending_trades(range(1, total + 1))

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        server, redis = redis_down()
        async with venue(handler) as url:
            settings = settings_for(url, data_dir=str(tmp_path), ingestor_journal_max_mb=16)
            first = fast_ingestor(settings, redis, queue_max=20)
            async with running(first):
                await until(lambda: first.stats.frames_received == total)
                assert first.stats.queue_full_waits < total  # the reader was not held back
        assert first.stats.dropped_at_stop == 0 and first.stats.journal_spilled == total + 2
        server.connected = True
        second = Ingestor(
            settings_for("ws://127.0.0.1:9", data_dir=str(tmp_path), ingestor_journal_max_mb=16),
            redis=redis,
            backoff_factory=fast_backoff,
        )
        async with running(second):
            await until(lambda: second.stats.journal_drained == total + 2)
        return await entries(redis, RAW), second

    got, _ = asyncio.run(scenario())
    frames = [f for f in got if f.kind == "ws"]
    assert [f.seq for f in frames[:total]] == list(range(1, total + 1))
    assert got[0].kind == "marker" and json.loads(got[0].data)["event"] == "connect"
    assert not list((tmp_path / "ingestor-journal" / "it").glob("*.jnl"))
