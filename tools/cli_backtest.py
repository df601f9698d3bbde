"""``tickpipe backtest``: declare its arguments, read its input, write its results.

The input is recording files (the formats ``tickpipe replay`` reads) or, with ``--redis``, the
``raw`` streams of every partition of the deployment between ``--start`` and ``--end``. The
results go to ``--out`` (a directory): ``signals.jsonl`` (one signal's stream fields a line),
``fills.jsonl``, ``orders.jsonl`` and ``summary.json``; the summary is also printed; ``--filters``
reads the venue's instrument filters from a saved ``exchangeInfo`` answer; ``--report``
draws equity and fills into one HTML page (:mod:`tools.backtest_report`). A mistake
in the input or the options is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from tickpipe.common.contract import base_entry_id
from tickpipe.common.errors import DecodeError, RedisUnavailable
from tickpipe.common.extras import need
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.redis_io import connect_redis, redis_errors, unavailable_line
from tickpipe.common.settings import Settings
from tickpipe.processor.lanes import decode_entries
from tickpipe.tools.backtest import (
    BacktestResult,
    Entry,
    entries_of_records,
    run_backtest,
    signal_line,
    summary_lines,
)
from tickpipe.tools.recordings import RecordingStats, read_recordings
from tickpipe.venues.binance.instruments import filters_of_exchange_info

__all__ = ["add_backtest_command", "run_backtest_command"]

PAGE = 5000


def add_backtest_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Declare ``tickpipe backtest`` on ``sub``."""
    b = sub.add_parser(
        "backtest", help="run the strategies over a recording (or a Redis range) with fills",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run TICKPIPE_STRATEGIES over recorded raw frames through the processor's "
        "own code (the signals\nare the live pipeline's on the same frames), shape their "
        "orders with the trader's instrument\nfilters and fill them with the mock's matching "
        "engine against the recorded book, print a\nsummary (signals, orders, fills, "
        "positions, PnL) and write signals, orders and fills to --out.\nInput: recording "
        "FILEs (as `tickpipe replay` reads them) or --redis with --start/--end.",
    )  # fmt: skip
    b.add_argument("files", type=Path, nargs="*", metavar="FILE")
    b.add_argument("--redis", action="store_true", help="read the raw streams from Redis")
    b.add_argument("--start", help="first entry of the Redis range: entry id, ns or ISO time")
    b.add_argument("--end", help="last entry of the Redis range (inclusive)")
    b.add_argument("--out", type=Path, default=Path("backtest-out"), metavar="DIR",
                   help="directory for the results (default backtest-out)")  # fmt: skip
    b.add_argument("--latency-ms", type=int, default=10, metavar="MS",
                   help="event time from a signal to the venue (default 10)")  # fmt: skip
    b.add_argument("--fee-bps", default="0", metavar="BPS", help="fee per fill (default 0)")
    b.add_argument("--filters", type=Path, metavar="FILE",
                   help="the venue's exchangeInfo answer (JSON) for the instrument filters "
                   "(default: the mock's)")  # fmt: skip
    b.add_argument("--limit", type=int, help="process at most this many frames")
    b.add_argument("--report", type=Path, metavar="FILE.html",
                   help="also draw equity and fills (dashboard extra: Plotly)")  # fmt: skip


def _range_id(text: str | None, default: str) -> str:
    """An XRANGE bound from an entry id, integer nanoseconds or an ISO time (UTC)."""
    if text is None:
        return default
    head, _, tail = text.partition("-")
    if head.isdigit() and tail.isdigit():
        return text
    if text.isdigit():
        return str(int(text) // 1_000_000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an entry id, nanoseconds or an ISO time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return str(int(moment.timestamp() * 1000))


async def _redis_entries(settings: Settings, url: str, start: str, end: str) -> list[Entry]:
    """Every raw entry of the deployment's partitions in the range, merged by receive time."""
    redis = connect_redis(url)
    streams: list[list[Entry]] = []
    try:
        async with redis_errors():
            for partition in settings.partitions():
                key, lower, part = settings.keys.raw(partition), start, str(partition)
                got: list[Entry] = []
                while True:
                    page: Any = await redis.xrange(key, min=lower, max=end, count=PAGE)
                    got += [(part, i, f) for i, f in decode_entries(page)]
                    if len(page) < PAGE:
                        break
                    lower = "(" + base_entry_id(got[-1][1])  # a packed entry's last frame
                streams.append(got)
    finally:
        await redis.aclose()
    return list(heapq.merge(*streams, key=lambda e: getattr(e[2], "ts_recv", 0)))


def _write(out_dir: Path, result: BacktestResult, summary: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "signals.jsonl").open("wb") as f:
        f.writelines(signal_line(s) for s in result.signals)
    with (out_dir / "fills.jsonl").open("wb") as f:
        f.writelines(orjson.dumps(fill.to_dict()) + b"\n" for fill in result.model.fills)
    with (out_dir / "orders.jsonl").open("wb") as f:
        for o in result.model.orders.values():
            row = {"client_order_id": o.client_order_id, "signal_id": o.signal_id,
                   "strategy": o.strategy, "symbol": o.symbol, "side": o.side,
                   "order_type": o.order_type, "time_in_force": o.time_in_force,
                   "post_only": o.post_only, "qty": str(o.qty),
                   "price": None if o.price is None else str(o.price), "status": o.status,
                   "reason": o.reason}  # fmt: skip
            f.write(orjson.dumps(row) + b"\n")
    (out_dir / "summary.json").write_bytes(
        orjson.dumps({"summary": summary, "counters": result.counters}, option=orjson.OPT_INDENT_2)
    )


def _filters(path: Path | None) -> dict[str, InstrumentFilters] | None:
    """The instrument filters of a saved ``exchangeInfo`` answer (``None``: the mock's)."""
    if path is None:
        return None
    try:
        return filters_of_exchange_info(orjson.loads(path.read_bytes()))
    except (orjson.JSONDecodeError, DecodeError) as exc:
        raise ValueError(f"--filters {path}: not an exchangeInfo answer ({exc})") from None


def _options(args: argparse.Namespace) -> Decimal:
    if args.latency_ms < 0:
        raise ValueError(f"--latency-ms must be 0 or more, got {args.latency_ms}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    try:
        fee = Decimal(args.fee_bps)
    except InvalidOperation:
        raise ValueError(f"--fee-bps must be a number, got {args.fee_bps!r}") from None
    if not fee.is_finite() or fee < 0:
        raise ValueError(f"--fee-bps must be 0 or more, got {args.fee_bps!r}")
    if args.redis and args.files:
        raise ValueError("give recording FILEs or --redis, not both")
    if not args.redis and not args.files:
        raise ValueError("give recording FILEs (see `tickpipe replay --help`) or --redis")
    if not args.redis and (args.start or args.end):
        raise ValueError("--start and --end select a Redis range: use them with --redis")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a directory")
    return fee


def run_backtest_command(settings: Settings, url: str, args: argparse.Namespace) -> int:
    """Run ``tickpipe backtest``; return the exit code (2 for a mistake in the input)."""
    try:
        fee = _options(args)
        filters = _filters(args.filters)  # a missing FILE: OSError, one line
        if args.report is not None:
            need("dashboard", "tickpipe backtest --report")
        stats = RecordingStats()
        entries: Iterator[Entry] | list[Entry]
        if args.redis:
            start, end = _range_id(args.start, "-"), _range_id(args.end, "+")
            entries = asyncio.run(_redis_entries(settings, url, start, end))
            if not entries:
                raise ValueError(f"no raw entries in {start}..{end} of namespace "
                                 f"{settings.namespace!r}")  # fmt: skip
            fraction = None
        else:
            records = read_recordings(args.files, stats)  # a missing FILE: ValueError
            entries = entries_of_records(settings, records, conn=f"backtest-{args.files[0].name}")
            fraction = stats.fraction
        result = run_backtest(
            settings, entries, latency_ms=args.latency_ms, fee_bps=fee, limit=args.limit,
            fraction=fraction, filters=filters,
        )  # fmt: skip
        if result.frames == 0:
            raise ValueError("the input holds no frame")
        summary = summary_lines(result, latency_ms=args.latency_ms, fee_bps=fee)
        _write(args.out, result, summary)
        if args.report is not None:
            from tickpipe.tools.backtest_report import write_report  # Plotly: checked above

            write_report(args.report, result, summary)
    except RedisUnavailable as exc:
        print(f"tickpipe backtest: {unavailable_line(url, exc)}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"tickpipe backtest: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary))
    print(f"wrote signals, orders and fills to {args.out}/", file=sys.stderr)
    return 0
