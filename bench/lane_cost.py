"""Measure the processor's core per trade, in process, as the symbols grow.

``python -m bench.lane_cost [--trades N] [--batch B] [--symbols 1,10,200,1000]`` feeds the same
trade frames as the blast server (round-robin over :func:`bench.frames.symbol_names`) through one
:class:`processor.lanes.PartitionLane` in batches of ``B`` (the processor's default read size),
the way a member on its own connection does (:class:`processor.link.Pipe`): each batch arrives
as the RESP bytes of an ``XREADGROUP`` reply, parsed by hiredis (redis-py's parser), decoded by
:func:`processor.wire.decode_flat_entries`, processed, and its commit encoded as the ``EVAL`` the
member writes. It prints per symbol count the lane's CPU time per trade (``time.process_time``,
so other jobs on the machine move it little) and its parts: reading the reply (parse and decode),
processing (the checkpoint's encoding included, also shown on its own) and encoding the commit;
the checkpoint's size at the end (each commit writes it), and the output entries per trade by
stream kind. The collector runs as in the stage (its thresholds, and what was built before the
run frozen). No Redis, no sockets, no event loop: it explains the scaling table's processor
column, it does not replace it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import hiredis

from bench.frames import raw_entries, symbol_names, trade_frames
from bench.stats import positive_counts
from tickpipe.common.names import GROUP_PROCESSOR, Partition
from tickpipe.common.redis_link import Script
from tickpipe.common.settings import Settings
from tickpipe.processor.__main__ import GC_THRESHOLDS
from tickpipe.processor.lanes import PartitionLane
from tickpipe.processor.wire import (
    COMMIT_SCRIPT,
    commit_call,
    decode_flat_entries,
    stream_entries,
)

__all__ = ["LaneCost", "lane_cost", "main"]

_COMMIT = Script(COMMIT_SCRIPT)


@dataclass(frozen=True)
class LaneCost:
    """What one lane spent on ``trades`` trades of ``symbols`` symbols."""

    symbols: int
    trades: int
    cpu_us_per_trade: float
    read_us_per_trade: float
    process_us_per_trade: float
    encode_us_per_trade: float
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
    fields = raw_entries(frames, conn="lc", ts_recv=now_ns)
    replies = [
        _xreadgroup_reply(lane.stream, start, fields[start : start + batch])
        for start in range(0, trades, batch)
    ]
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()  # the stage freezes what import and set-up made; here also the inputs
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return _run(lane, settings, replies, symbols, trades, now_ns)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run(
    lane: PartitionLane,
    settings: Settings,
    replies: list[bytes],
    symbols: int,
    trades: int,
    now_ns: int,
) -> LaneCost:
    """Feed ``replies`` through ``lane``; return what it spent per trade."""
    read_s = process_s = encode_s = checkpoint_s = 0.0
    outputs: Counter[str] = Counter()
    size = 0
    for reply in replies:
        began = time.process_time()
        reader = hiredis.Reader()
        reader.feed(reply)
        entries = decode_flat_entries(stream_entries(reader.gets()))
        read = time.process_time()
        commit = lane.process(entries, now_ns)
        processed = time.process_time()
        keys, args = commit_call(
            lease_key=lane.lease_key,
            checkpoint_key=lane.checkpoint_key,
            stream=lane.stream,
            group=GROUP_PROCESSOR,
            instance=settings.instance,
            lease_ms=10_000,
            commit=commit,
        )
        _COMMIT.eval(keys, args)
        encoded = time.process_time()
        lane.state.to_bytes()  # what process() did once for this commit, timed on its own
        checkpoint_s += time.process_time() - encoded
        read_s += read - began
        process_s += processed - read
        encode_s += encoded - processed
        size = len(commit.checkpoint)
        outputs.update(_kind(stream) for stream, _ in commit.outputs)
    per_trade = 1e6 / trades
    return LaneCost(
        symbols,
        trades,
        per_trade * (read_s + process_s + encode_s),
        per_trade * read_s,
        per_trade * process_s,
        per_trade * encode_s,
        per_trade * checkpoint_s,
        size,
        {kind: n / trades for kind, n in sorted(outputs.items())},
    )


def _xreadgroup_reply(stream: str, first: int, entries: Sequence[dict[str, str]]) -> bytes:
    """Return the RESP2 bytes Redis answers ``XREADGROUP`` with for ``entries`` of ``stream``."""

    def bulk(text: str) -> bytes:
        data = text.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)

    parts = [b"*1\r\n*2\r\n", bulk(stream), b"*%d\r\n" % len(entries)]
    for n, fields in enumerate(entries, start=first + 1):
        parts.append(b"*2\r\n" + bulk(f"{n}-0") + b"*%d\r\n" % (2 * len(fields)))
        parts.extend(bulk(key) + bulk(value) for key, value in fields.items())
    return b"".join(parts)


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
    counts = positive_counts(parser, "--symbols", args.symbols)
    if args.trades < 1 or args.batch < 1:
        parser.error("--trades and --batch must be positive")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{args.trades:,} trades per row, batches of {args.batch}; CPU is process time; "
        f"load average {load}\n"
    )
    print(
        "| symbols | lane CPU µs per trade | read reply | process | of which the checkpoint "
        "| encode commit | checkpoint bytes | output entries per trade |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for count in counts:
        cost = lane_cost(count, args.trades, args.batch)
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in cost.outputs_per_trade.items())
        print(
            f"| {count:,} | {cost.cpu_us_per_trade:.1f} | {cost.read_us_per_trade:.1f} "
            f"| {cost.process_us_per_trade:.1f} | {cost.checkpoint_us_per_trade:.1f} "
            f"| {cost.encode_us_per_trade:.1f} | {cost.checkpoint_bytes:,} | {kinds} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
