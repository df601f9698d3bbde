"""Measure the processor stage's CPU per trade against the size of its batches.

``python -m bench.stage_cost [--trades N] [--batch 10,50,500] [--runs R]`` fills a raw stream
of a fresh ``redis-server`` with ``N`` trade frames of two symbols (as the ingestor writes
them), then per batch size starts a real ``python -m tickpipe.processor`` with
``TICKPIPE_BATCH_SIZE`` set, and once its first trade is in Redis measures, until the last one
is, the processor's CPU time (``/proc``: user + system) and Redis's (``INFO cpu``) per trade.
Batch sizes alternate over ``R`` runs and the median is printed with the range, next to the load
average. A pre-filled stream gives full batches; a processor that keeps up with a live feed reads
smaller ones, and what each batch costs on its own (its Redis round trips, commit and
checkpoint) is the difference between the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from bench.frames import trade_frames
from bench.peer import cpu_seconds
from bench.process import fill_raw
from bench.rig import Rig, temp_dir, wait_until
from bench.stats import positive_counts
from tickpipe.common.names import Keys, Partition

__all__ = ["main", "stage_cost"]

_SYMBOLS = ("BTCUSDT", "ETHUSDT")


async def _redis_cpu(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _one(
    rig: Rig, redis: aioredis.Redis, ns: str, count: int, batch: int
) -> tuple[float, float]:
    """Drain ``count`` pre-filled frames with one member reading ``batch`` at a time; return its
    CPU µs per trade and Redis's."""
    keys, part = Keys(ns), Partition("binance", 0)
    # Every trade lies in the past when received (1 ms per 100 frames), as in bench.process.
    frames = trade_frames(_SYMBOLS, count, start_ms=time.time_ns() // 10**6 - count // 100 - 1)
    await fill_raw(redis, keys.raw(part), frames, conn=f"{ns}-1")
    env = {
        "TICKPIPE_NAMESPACE": ns,
        "TICKPIPE_SYMBOLS": ",".join(_SYMBOLS),
        "TICKPIPE_SHARDS": "1",
        "TICKPIPE_INSTANCE": f"{ns}-m1",
        "TICKPIPE_BATCH_SIZE": str(batch),
    }
    name = f"processor-{ns}"
    pid = rig.start(name, ["-m", "tickpipe.processor"], env)
    trades = keys.trades(part)

    async def stored(at_least: int) -> bool:
        if rig.children[name].poll() is not None:
            raise RuntimeError(f"{name} exited: {rig.tail(name)}")
        return int(await redis.xlen(trades)) >= at_least

    await wait_until(lambda: stored(1), timeout_s=120, what="the first trade", every_s=0.005)
    first = int(await redis.xlen(trades))
    cpu0, redis0 = cpu_seconds(pid), await _redis_cpu(redis)
    await wait_until(lambda: stored(count), timeout_s=600, what=f"{count} trades", every_s=0.01)
    cpu1, redis1 = cpu_seconds(pid), await _redis_cpu(redis)
    rig.stop(name)
    done = count - first
    await redis.delete(keys.raw(part), trades)
    return 1e6 * (cpu1 - cpu0) / done, 1e6 * (redis1 - redis0) / done


async def stage_cost(
    trades: int, batches: Sequence[int], runs: int
) -> dict[int, list[tuple[float, float]]]:
    """Return, per batch size, ``runs`` (processor, Redis) CPU µs per trade."""
    out: dict[int, list[tuple[float, float]]] = {b: [] for b in batches}
    with temp_dir("tp-bench-stage-cost-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            for run in range(runs):
                for batch in batches:
                    out[batch].append(await _one(rig, redis, f"sc{run}b{batch}", trades, batch))
            await redis.aclose()
        finally:
            await rig.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the processor's and Redis's CPU per trade per batch size; return 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.stage_cost", description=__doc__)
    parser.add_argument("--trades", type=int, default=50_000, help="frames per run")
    parser.add_argument("--batch", default="10,500", help="batch sizes (TICKPIPE_BATCH_SIZE)")
    parser.add_argument("--runs", type=int, default=3, help="runs per batch size, alternating")
    args = parser.parse_args(argv)
    batches = positive_counts(parser, "--batch", args.batch)
    if args.trades < 1 or args.runs < 1:
        parser.error("--trades and --runs must be positive")
    results = asyncio.run(stage_cost(args.trades, batches, args.runs))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.trades:,} trades per run, {args.runs} runs; load average at the end {load}\n")
    print("| batch | processor CPU µs per trade | Redis CPU µs per trade |")
    print("|---|---|---|")
    for batch, values in results.items():
        cells = []
        for series in ([p for p, _ in values], [r for _, r in values]):
            cells.append(f"{statistics.median(series):.1f} ({min(series):.1f}-{max(series):.1f})")
        print(f"| {batch:,} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
