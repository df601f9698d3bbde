"""Measure ``tickpipe replay``'s write rate against the ingestor's, in the same run.

The replay reads the real captures in ``shared/realdata/hftbacktest/spot`` (BTCUSDT and ETHUSDT,
about 10.8 minutes and 180,000 frames, REST snapshots included), decompresses and routes them and
writes them into a real redis-server as fast as it can (:func:`common.replay.replay_file`, speed
0). Its rate is frames / seconds from the first read to the last reply, and the count in Redis
must equal the frames the captures hold (zero loss). The reference is the ingestor's sustained
frames/s on the blast server (:func:`bench.ingest.ingestor_rate`), measured by the same process
on the same redis-server.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.ingest import ingestor_rate
from bench.rig import REPO, Rig, temp_dir
from bench.stats import Row, rate, ratio
from common.recordings import read_recordings
from common.replay import replay_file
from common.settings import Settings

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
        stored += int(await redis.xlen(stream)) - 1  # less the connect marker
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
    reps = 1 if quick else 3
    count = 150_000 if quick else 300_000
    with temp_dir("tp-bench-replay-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            port = await rig.start_ready(
                "blast", ["-m", "bench.blast", "--count", str(count)], "port"
            )
            replays: list[float] = []
            ingests: list[float] = []
            frames = 0
            for n in range(reps):
                value, frames = await _replay_run(redis, rig.redis_url, str(n), files)
                replays.append(value)
                ingests.append(await ingestor_rate(redis, rig.redis_url, port, count, f"ri{n}"))
            await redis.aclose()
        finally:
            await rig.close()
    r, i = statistics.median(replays), statistics.median(ingests)
    q = ratio(r, i)
    return [
        Row(
            "replay",
            f"replay frames/s ({frames:,} real frames, zero loss)",
            f"{r:,.0f}",
            f"ingestor {i:,.0f} frames/s",
            "",
            None,
        ),
        Row("replay", "replay / ingestor", f"{q:.2f}x", f"median of {reps}", ">= 1.00x", q >= 1.0),
    ]
