"""Measure the archive stage's rate against the ingestor's, in the same run.

The real captures in ``shared/realdata/hftbacktest/spot`` (about 180,000 frames) are replayed
into a real redis-server's ``raw`` streams first; then the archive stage (:func:`archive.shell.run`,
in this process, on the same redis-server) reads them through its consumer group and writes them
to Parquet, timed from its start to the end of its last write (every entry written, recorded and
acknowledged). Every frame must be in exactly one file afterwards (zero loss, no duplicate). The
reference is the ingestor's sustained frames/s on the blast server
(:func:`bench.ingest.ingestor_rate`), measured by the same process on the same redis-server.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.ingest import count_frames, versus_ingestor
from bench.replay import CAPTURES, FILES
from bench.stats import Row, rate
from tickpipe.archive.files import read_rows
from tickpipe.archive.shell import ArchiveStats, run
from tickpipe.common.settings import Settings
from tickpipe.tools.recordings import read_recordings
from tickpipe.tools.replay import replay_file

__all__ = ["run_archive"]


async def _archive_run(redis: aioredis.Redis, url: str, tag: str, root: Path) -> tuple[float, int]:
    """Fill ``raw`` from the captures, archive it all; return rows/s and the rows (one per
    frame: a packed raw entry is one row per frame, :class:`archive.layout.Segment`)."""
    settings = Settings(
        redis_url=url, namespace=f"ab{tag}", symbols=("BTCUSDT", "ETHUSDT"), shards=2,
        archive=True, archive_dir=str(root / tag), batch_size=2000,
    )  # fmt: skip
    files = [CAPTURES / name for name in FILES]
    await replay_file(redis, settings, read_recordings(files), conn=f"ab-{tag}", out=io.StringIO())
    total = sum([await count_frames(redis, settings.keys.raw(p)) for p in settings.partitions()])
    stats = ArchiveStats()
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(run(settings, stop, redis=redis, stats=stats, block_ms=50))
    while stats.open_entries + stats.entries < total:
        if task.done():
            await task
            raise RuntimeError("the archive stopped early")
        await asyncio.sleep(0.01)
    stop.set()
    await task
    seconds = time.perf_counter() - started
    ids = [
        r["_source"] + r["_id"] for r in read_rows(root / tag, "binance", "raw", None, None, None)
    ]
    if len(ids) != total or len(set(ids)) != total:
        raise RuntimeError(
            f"archive wrote {len(ids):,} rows ({len(set(ids)):,} distinct) of {total:,}"
        )
    for p in settings.partitions():
        await redis.delete(settings.keys.raw(p))
    return rate(total, seconds), total


async def run_archive(quick: bool) -> list[Row]:
    """Compare the archive's entries/s with the ingestor's frames/s, alternating runs."""
    missing = [name for name in FILES if not (CAPTURES / name).is_file()]
    if missing:
        return [Row("archive", "archive entries/s", "not run", f"missing {', '.join(missing)}")]
    label = "archive entries/s ({amount} raw entries to Parquet, each once)"
    return await versus_ingestor("archive", quick, _archive_run, label)
