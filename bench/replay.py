"""Measure ``tickpipe replay``'s write rate against the ingestor's, in the same run.

The replay reads the real captures in ``shared/realdata/hftbacktest/spot`` (BTCUSDT and ETHUSDT,
about 10.8 minutes and 180,000 frames, REST snapshots included), decompresses and routes them and
writes them into a real redis-server as fast as it can (:func:`tools.replay.replay_file`, speed
0). Its rate is frames / seconds from the first read to the last reply, and the count in Redis
must equal the frames the captures hold (zero loss). The reference is the ingestor's sustained
frames/s on the blast server (:func:`bench.ingest.ingestor_rate`), measured by the same process
on the same redis-server.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.ingest import count_frames, versus_ingestor
from bench.rig import REPO
from bench.stats import Row, rate
from tickpipe.common.settings import Settings
from tickpipe.tools.recordings import read_recordings
from tickpipe.tools.replay import replay_file

__all__ = ["CAPTURES", "run_replay"]

CAPTURES = REPO.parent / "shared" / "realdata" / "hftbacktest" / "spot"
FILES = ("btcusdt_20240808.gz", "btcusdt_20240809.gz", "ethusdt_20240808.gz", "ethusdt_20240809.gz")


async def _replay_run(
    redis: aioredis.Redis, url: str, tag: str, files: list[Path]
) -> tuple[float, int]:
    """Replay ``files`` once into a fresh namespace; return frames/s and the frames written."""
    settings = Settings(
        redis_url=url, namespace=f"rb{tag}", symbols=("BTCUSDT", "ETHUSDT"), shards=2
    )
    started = time.perf_counter()
    stats = await replay_file(
        redis, settings, read_recordings(files), conn=f"bench-{tag}", out=io.StringIO()
    )
    seconds = time.perf_counter() - started
    stored = 0
    for part in settings.partitions():
        stream = settings.keys.raw(part)
        stored += await count_frames(redis, stream) - 1  # less the connect marker
        await redis.delete(stream)
    if stored != stats.frames:
        raise RuntimeError(f"replay lost frames: {stored:,} of {stats.frames:,} in Redis")
    return rate(stats.frames, seconds), stats.frames


async def run_replay(quick: bool) -> list[Row]:
    """Compare replay's frames/s with the ingestor's, alternating runs."""
    files = [CAPTURES / name for name in FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        return [Row("replay", "replay frames/s", "not run", f"missing {', '.join(missing)}")]

    async def one_run(redis: aioredis.Redis, url: str, tag: str, tmp: Path) -> tuple[float, int]:
        del tmp
        return await _replay_run(redis, url, tag, files)

    label = "replay frames/s ({amount} real frames, zero loss)"
    return await versus_ingestor("replay", quick, one_run, label)
