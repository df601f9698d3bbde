"""Measure the processor's core per trade, in process, as the symbols grow.

``python -m bench.lane_cost [--trades N] [--batch B] [--symbols 1,10,200,1000]`` feeds the same
trade frames as the blast server (round-robin over :func:`bench.frames.symbol_names`) through one
:class:`processor.lanes.PartitionLane` in batches of ``B`` (the processor's default read size),
decoding the entries as the shell does, and prints per symbol count: the lane's CPU time per
trade (``time.process_time``, so other jobs on the machine move it little), the part of it spent
encoding the checkpoint, the checkpoint's size at the end (each commit writes it), and the output
entries per trade by stream kind. No Redis, no sockets: it explains the scaling table's
processor column, it does not replace it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from bench.frames import raw_entries, symbol_names, trade_frames
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.processor.lanes import PartitionLane, decode_entries

__all__ = ["LaneCost", "lane_cost", "main"]


@dataclass(frozen=True)
class LaneCost:
    """What one lane spent on ``trades`` trades of ``symbols`` symbols."""

    symbols: int
    trades: int
    cpu_us_per_trade: float
    checkpoint_us_per_trade: float
    checkpoint_bytes: int
    outputs_per_trade: dict[str, float]


def lane_cost(symbols: int, trades: int, batch: int) -> LaneCost:
    """Run ``trades`` trade frames over ``symbols`` symbols through one lane; return its cost."""
    names = symbol_names(symbols)
    settings = Settings(namespace="lc", symbols=names, shards=1)
    lane = PartitionLane(settings, Partition(settings.venue, 0))
    lane.load(None)
    now_ns = time.time_ns()
    # Every trade lies in the past when received (1 ms per 100 frames), as the blast server's.
    frames = trade_frames(names, trades, start_ms=now_ns // 1_000_000 - trades // 100 - 1)
    entries = [
        (f"{n}-0".encode(), {k.encode(): v.encode() for k, v in fields.items()})
        for n, fields in enumerate(raw_entries(frames, conn="lc", ts_recv=now_ns), start=1)
    ]
    cpu_s = checkpoint_s = 0.0
    outputs: Counter[str] = Counter()
    size = 0
    for start in range(0, trades, batch):
        began = time.process_time()
        commit = lane.process(decode_entries(entries[start : start + batch]), now_ns)
        cpu_s += time.process_time() - began
        began = time.process_time()
        lane.state.to_bytes()  # what process() did once for this commit, timed on its own
        checkpoint_s += time.process_time() - began
        size = len(commit.checkpoint)
        outputs.update(_kind(stream) for stream, _ in commit.outputs)
    return LaneCost(
        symbols,
        trades,
        1e6 * cpu_s / trades,
        1e6 * checkpoint_s / trades,
        size,
        {kind: n / trades for kind, n in sorted(outputs.items())},
    )


def _kind(stream: str) -> str:
    """``ns:{binance:0}:bars:1s`` -> ``bars:1s``; ``ns:{binance:0}:trades`` -> ``trades``."""
    return stream.split("}:", 1)[-1]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the lane's cost per symbol count as a Markdown table; return 0."""
    parser = argparse.ArgumentParser(prog="python -m bench.lane_cost", description=__doc__)
    parser.add_argument("--trades", type=int, default=100_000, help="trades per symbol count")
    parser.add_argument("--batch", type=int, default=500, help="entries per batch (default 500)")
    parser.add_argument("--symbols", default="1,10,200,1000", help="symbol counts to run")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.symbols.split(",")]
    except ValueError:
        parser.error(f"--symbols {args.symbols!r}: give whole numbers, e.g. 1,10,200")
    if min(counts) < 1 or args.trades < 1 or args.batch < 1:
        parser.error("--symbols, --trades and --batch must be positive")
    print(f"{args.trades:,} trades per row, batches of {args.batch}; CPU is process time\n")
    print(
        "| symbols | lane CPU µs per trade | of which the checkpoint | checkpoint bytes "
        "| output entries per trade |"
    )
    print("|---|---|---|---|---|")
    for count in counts:
        cost = lane_cost(count, args.trades, args.batch)
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in cost.outputs_per_trade.items())
        print(
            f"| {count:,} | {cost.cpu_us_per_trade:.1f} | {cost.checkpoint_us_per_trade:.1f} "
            f"| {cost.checkpoint_bytes:,} | {kinds} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
