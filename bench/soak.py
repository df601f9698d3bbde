"""Watch memory over a run: RSS of every stage and Redis ``used_memory``, sampled at fixed times.

The mock sends a steady trade rate with a level the price keeps crossing, so every stage works
(ingest, trades, bars, signals, orders). A stage is flat when its RSS after warm-up (the first
20 % of samples) stays within 10 % of its first post-warm-up sample.

Retention (``TICKPIPE_RETENTION_MAXLEN``) is set so that every stream reaches its length cap
within the first 10 % of the run; from then on the processor trims as fast as entries arrive
(every 5 s, keeping up to one round's appends beyond the cap), so Redis ``used_memory`` follows
a saw-tooth. It is bounded when the peak of the second half after warm-up is within 10 % of the
peak of the first half.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.ingest import count_frames
from bench.latency import HYSTERESIS_BPS, KEY, LEVELS, QTY, SECRET
from bench.rig import Rig, rss_bytes, temp_dir, wait_until
from bench.stats import Row, drift

__all__ = ["run_soak"]

STAGES = ("ingestor", "processor", "trader")


async def run_soak(quick: bool, minutes: float, rate: int = 2000) -> list[Row]:
    """Run the whole pipeline for ``minutes`` at ``rate`` trades/s and report memory drift."""
    seconds = 60.0 if quick else minutes * 60
    every = max(1.0, seconds / 60)
    samples: dict[str, list[float]] = {name: [] for name in (*STAGES, "mock", "redis")}
    maxlen = max(1000, int(rate * seconds * 0.1))  # the raw stream is full after 10 % of the run
    with temp_dir("tp-bench-soak-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            venue_env = {"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
            port = await rig.start_ready(
                "mock",
                ["-m", "tickpipe.mock_ws", "--binance-port", "0", "--rate", str(rate / 2)],
                "binance_port",
                env=venue_env,
            )
            env = {
                **venue_env,
                "TICKPIPE_NAMESPACE": "soak",
                "TICKPIPE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
                "TICKPIPE_BINANCE_WS_API_URL": f"ws://127.0.0.1:{port}/ws-api/v3",
                "TICKPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
                "TICKPIPE_THRESHOLDS": ",".join(f"{s}={v}" for s, v in LEVELS.items()),
                "TICKPIPE_HYSTERESIS_BPS": HYSTERESIS_BPS,
                "TICKPIPE_ORDER_QTY": QTY,
                "TICKPIPE_MAX_ORDERS_PER_S": "10000",
                "TICKPIPE_RETENTION_MAXLEN": str(maxlen),
            }
            pids = {name: rig.start(name, ["-m", f"tickpipe.{name}"], env) for name in STAGES}
            pids["mock"] = rig.children["mock"].pid

            async def healthy() -> bool:
                for name in STAGES:
                    if rig.children[name].poll() is not None:
                        raise RuntimeError(f"{name} exited: {rig.tail(name)}")
                return len([k async for k in redis.scan_iter(match="soak:health:*")]) >= 3

            await wait_until(
                healthy, timeout_s=30, what="the stages to report health", every_s=0.05
            )
            began = time.monotonic()
            while time.monotonic() - began < seconds:
                for name, pid in pids.items():
                    samples[name].append(rss_bytes(pid) / 2**20)
                info: Any = await redis.info("memory")
                samples["redis"].append(int(info["used_memory"]) / 2**20)
                for name in STAGES:
                    if rig.children[name].poll() is not None:
                        raise RuntimeError(f"{name} exited during the soak: {rig.tail(name)}")
                await asyncio.sleep(every)
            raw = longest = 0
            async for key in redis.scan_iter(match="soak:*:raw"):
                raw += await count_frames(redis, key)  # frames: an entry may hold several
            async for key in redis.scan_iter(match="soak:*", _type="stream"):
                longest = max(longest, int(await redis.xlen(key)))
            await redis.aclose()
        finally:
            await rig.close()
    rows = []
    label = f"{seconds / 60:.0f} min @ {rate:,}/s, {raw:,} frames kept"
    for name, values in samples.items():
        d = drift(values)
        rest = values[int(len(values) * 0.2) :]
        what = "used_memory" if name == "redis" else "RSS"
        flat = None if name == "mock" else d <= 0.10
        reference = f"drift after warm-up {d * 100:.1f} %"
        target = "" if flat is None else "<= 10 %"
        if name == "redis":
            half = len(rest) // 2
            early, late = max(rest[:half]), max(rest[half:])
            growth = late / early - 1
            flat, target = growth <= 0.10, "peak growth <= 10 %"
            reference = (
                f"peak {early:.1f} then {late:.1f} MiB ({growth * 100:+.1f} %); retention "
                f"{maxlen:,} entries per stream, longest stream {longest:,} at the end"
            )
        rows.append(
            Row(
                "soak",
                f"{name} {what} ({label})",
                f"{rest[0]:.1f} -> {values[-1]:.1f} MiB",
                reference,
                target,
                flat,
            )
        )
        if name in STAGES:  # the shape of the curve: growth, a plateau, or a one-off step
            tenths = [values[min(len(values) - 1, len(values) * k // 10)] for k in range(11)]
            rows.append(
                Row(
                    "soak",
                    f"{name} RSS every 10 % of the run (MiB)",
                    " ".join(f"{v:.1f}" for v in tenths),
                )
            )
    return rows
