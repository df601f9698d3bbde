"""How long the mock exchange holds its own event loop: ``python -m bench.mock_lag``.

The mock stamps both ends of tick-to-order (the trade sent, the order received), so a callback
that holds its loop lands in the latency figure. This runs the mock in process, as the latency
bench's rate asks of it (``--rate`` trades/s over BTCUSDT and ETHUSDT), with one client on
both trade streams, and prints over ``--seconds`` after a 2-s warm-up: the process's CPU per
trade (mock and client), the collector's share of it, and the loop's lag, measured by a task
that wakes every 10 ms (p50/p99/max of how late it woke). Run it alternating with a baseline
tree (``PYTHONPATH=<tree>``): the figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.stats import percentile
from tickpipe.mock_ws import start_mock

__all__ = ["main", "measure"]

TICK_S = 0.01


async def measure(rate: float, seconds: float, ground_truth: Path) -> str:
    """Return one line of figures for the mock at ``rate`` trades/s (see the module doc)."""
    mock = await start_mock(
        trades_per_s=rate / 2,
        seed=2,
        ground_truth_path=str(ground_truth),
        api_key="bench-key",
        api_secret="bench-secret",
    )
    gc.freeze()  # as python -m tickpipe.mock_ws does once it listens
    received = [0]
    lags: list[float] = []
    pauses: list[int] = []
    started = [0]

    async def client() -> None:
        names = "btcusdt@trade/ethusdt@trade"
        url = f"ws://127.0.0.1:{mock.binance_port}/stream?streams={names}"
        async with connect(url, compression=None) as ws:
            async for _ in ws:
                received[0] += 1

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            lags.append(loop.time() - due)

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.thread_time_ns()
        else:
            pauses.append(time.thread_time_ns() - started[0])

    tasks = [asyncio.create_task(client()), asyncio.create_task(ticker())]
    try:
        await asyncio.sleep(2.0)
        lags.clear()
        gc.callbacks.append(on_gc)
        cpu, count = time.process_time(), received[0]
        await asyncio.sleep(seconds)
        cpu, count = time.process_time() - cpu, received[0] - count
        gc.callbacks.remove(on_gc)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await mock.close()
    if not count or not lags:
        return "no trades received"
    ms = [lag * 1e3 for lag in lags]
    return (
        f"{count / seconds:,.0f} trades/s received; CPU {cpu / count * 1e6:.1f} us per trade "
        f"(mock and client), GC {100 * sum(pauses) / 1e9 / cpu:.1f} % of it "
        f"({len(pauses)} collections); loop lag p50 {percentile(ms, 50):.1f} / "
        f"p99 {percentile(ms, 99):.1f} / max {max(ms):.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement once and print its line."""
    parser = argparse.ArgumentParser(prog="python -m bench.mock_lag", description=__doc__)
    parser.add_argument("--rate", type=float, default=5000.0, help="trades/s (default 5000)")
    parser.add_argument("--seconds", type=float, default=12.0, help="window (default 12)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        print("--rate and --seconds must be positive", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tp-mock-lag-") as tmp:
        line = asyncio.run(measure(args.rate, args.seconds, Path(tmp) / "gt.jsonl"))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
