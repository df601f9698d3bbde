"""Measure processor throughput (one member; two members on two partitions) and takeover time.

The raw streams are filled before the processor starts, with the frames the ingestor would have
written; each processor member is a real ``python -m tickpipe.processor`` process. A partition's
rate is
its frames / (time its trades stream holds them all - ``ts_proc`` of its first trade).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import redis.asyncio as aioredis

from bench.frames import raw_entries, trade_frames
from bench.rig import Rig, temp_dir, wait_until
from bench.stats import Row, rate
from tickpipe.common.names import Keys, Partition

__all__ = ["fill_raw", "run_process", "run_takeover"]

LEASE_MS = 5000


async def fill_raw(redis: aioredis.Redis, stream: str, frames: list[str], *, conn: str) -> None:
    """Append ``frames`` to ``stream`` as the ingestor would, in pipelined batches."""
    entries = raw_entries(frames, conn=conn, ts_recv=time.time_ns())
    for i in range(0, len(entries), 5000):
        pipe = redis.pipeline(transaction=False)
        for fields in entries[i : i + 5000]:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()


def _start_ms(count: int) -> int:
    """Return a first trade time such that ``count`` frames (1 ms per 100) end now.

    The processor dead-letters trades timed after their receive time (beyond a small skew), so
    the frames, all received "now", must lie in the past.
    """
    return time.time_ns() // 10**6 - count // 100 - 1


def _member_env(ns: str, shards: int, instance: str) -> dict[str, str]:
    return {
        "TICKPIPE_NAMESPACE": ns,
        "TICKPIPE_SYMBOLS": "BTCUSDT,ETHUSDT",
        "TICKPIPE_SHARDS": str(shards),
        "TICKPIPE_INSTANCE": instance,
    }


async def _first_ts_proc(redis: aioredis.Redis, stream: str) -> int:
    first: Any = await redis.xrange(stream, count=1)
    return int(first[0][1][b"ts_proc"])


async def _drain_time(redis: aioredis.Redis, rig: Rig, trades: str, count: int) -> float:
    """Wait until ``trades`` holds ``count`` entries; return the frames/s of that partition."""

    async def done() -> bool:
        for name, proc in rig.children.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {rig.tail(name)}")
        return int(await redis.xlen(trades)) >= count

    await wait_until(done, timeout_s=600, what=f"{count} trades in {trades}", every_s=0.01)
    finished = time.time_ns()
    return rate(count, (finished - await _first_ts_proc(redis, trades)) / 1e9)


async def run_process(quick: bool) -> list[Row]:
    """Processor frames/s: one member on one partition, then two members on two partitions."""
    count = 40_000 if quick else 300_000
    with temp_dir("tp-bench-process-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            # One member, one partition holding both symbols.
            keys, p0 = Keys("pr1"), Partition("binance", 0)
            frames = trade_frames(("BTCUSDT", "ETHUSDT"), count, start_ms=_start_ms(count))
            await fill_raw(redis, keys.raw(p0), frames, conn="bench-1")
            rig.start("proc-1", ["-m", "tickpipe.processor"], _member_env("pr1", 1, "m1"))
            one = await _drain_time(redis, rig, keys.trades(p0), count)
            rig.stop("proc-1")
            # Two members, two partitions; each member's lease is set beforehand.
            keys2 = Keys("pr2")
            parts = {Partition("binance", 0): "ETHUSDT", Partition("binance", 1): "BTCUSDT"}
            for n, (part, symbol) in enumerate(parts.items()):
                frames = trade_frames((symbol,), count, start_ms=_start_ms(count))
                await fill_raw(redis, keys2.raw(part), frames, conn=f"bench-{n}")
                await redis.set(keys2.lease(part), f"m{n + 1}", px=30_000)
            for n in range(2):
                rig.start(
                    f"proc2-{n + 1}",
                    ["-m", "tickpipe.processor"],
                    _member_env("pr2", 2, f"m{n + 1}"),
                )
            rates = await asyncio.gather(
                *(_drain_time(redis, rig, keys2.trades(p), count) for p in parts)
            )
            await redis.aclose()
        finally:
            await rig.close()
    rows = [
        Row(
            "processor",
            f"1 member, 1 partition ({count:,} trade frames)",
            f"{one:,.0f} frames/s",
            "",
            ">= 50,000/member",
            one >= 50_000,
        ),
    ]
    for n, r in enumerate(rates):
        rows.append(
            Row(
                "processor",
                f"2 members: member {n + 1} frames/s",
                f"{r:,.0f}",
                f"{r / one:.2f}x of 1 member",
                ">= 50,000/member",
                r >= 50_000,
            )
        )
    rows.append(
        Row(
            "processor",
            "2 members: total frames/s",
            f"{sum(rates):,.0f}",
            f"{sum(rates) / one:.2f}x of 1 member",
            "",
            None,
        )
    )
    return rows


async def _feed(
    redis: aioredis.Redis, streams: dict[str, str], per_s: int, stop: asyncio.Event
) -> None:
    """Append ``per_s`` frames per second to every stream (symbol per stream) until ``stop``."""
    tick = 0.02
    batch = max(1, int(per_s * tick))
    next_id = 1
    start_ms = time.time_ns() // 10**6
    while not stop.is_set():
        for stream, symbol in streams.items():
            frames = trade_frames((symbol,), batch, start_ms=start_ms, first_id=next_id)
            await fill_raw(redis, stream, frames, conn="feed")
        next_id += batch
        await asyncio.sleep(tick)


async def run_takeover(quick: bool) -> list[Row]:
    """Kill -9 the member owning a partition; time until that partition is processed again."""
    del quick
    with temp_dir("tp-bench-takeover-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            keys = Keys("tk")
            parts = {Partition("binance", 0): "ETHUSDT", Partition("binance", 1): "BTCUSDT"}
            for n, part in enumerate(parts):
                await redis.set(keys.lease(part), f"m{n + 1}", px=LEASE_MS)
            for n in range(2):
                rig.start(
                    f"proc-{n + 1}", ["-m", "tickpipe.processor"], _member_env("tk", 2, f"m{n + 1}")
                )
            stop = asyncio.Event()
            feed = asyncio.create_task(
                _feed(redis, {keys.raw(p): s for p, s in parts.items()}, 1000, stop)
            )
            victim = keys.trades(Partition("binance", 1))

            async def flowing() -> bool:
                return int(await redis.xlen(victim)) > 2000

            await wait_until(flowing, timeout_s=60, what="trades on partition 1", every_s=0.05)
            rig.kill("proc-2", signal.SIGKILL)
            killed = time.time_ns()

            async def resumed() -> int | None:
                last: Any = await redis.xrevrange(victim, count=1)
                ts = int(last[0][1][b"ts_proc"])
                return ts if ts > killed else None

            again = await wait_until(resumed, timeout_s=60, what="partition 1 processed again")

            async def caught_up() -> bool:
                info: Any = await redis.xinfo_groups(keys.raw(Partition("binance", 1)))
                return bool(info) and info[0]["pending"] == 0 and (info[0].get("lag") or 0) < 50

            await wait_until(caught_up, timeout_s=60, what="partition 1 caught up")
            caught = time.time_ns()
            stop.set()
            await feed
            await redis.aclose()
        finally:
            await rig.close()
    return [
        Row(
            "recovery",
            "kill -9 member -> its partition processed again",
            f"{(again - killed) / 1e6:,.0f} ms",
            f"lease {LEASE_MS} ms",
            "",
            None,
        ),
        Row(
            "recovery",
            "kill -9 member -> its partition caught up (1k frames/s feed)",
            f"{(caught - killed) / 1e6:,.0f} ms",
            f"lease {LEASE_MS} ms",
            "",
            None,
        ),
    ]
