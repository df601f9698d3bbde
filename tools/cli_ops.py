"""The operator's subcommands of ``tickpipe``: tail, subscribe, unsubscribe, kill-switch,
replay and export. :func:`add_operator_commands` declares them; :func:`run_operator_command`
runs one against Redis and returns the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import redis.asyncio as aioredis

from tickpipe.common.errors import RedisUnavailable
from tickpipe.common.extras import need
from tickpipe.common.names import EXPORT_KINDS
from tickpipe.common.redis_io import connect_redis, redacted, redis_errors, unavailable_line
from tickpipe.common.settings import Settings
from tickpipe.tools.ops import (
    PARTITION_KINDS,
    VENUE_KINDS,
    change_subscription,
    read_recordings,
    replay_file,
    resolve_streams,
    set_kill_switch,
    tail,
)
from tickpipe.tools.recordings import RecordingStats

__all__ = ["OPERATOR_COMMANDS", "add_operator_commands", "run_operator_command"]

OPERATOR_COMMANDS = ("tail", "subscribe", "unsubscribe", "kill-switch", "replay", "export")


def _symbols(values: list[str]) -> list[str]:
    return [s.strip().upper() for v in values for s in v.split(",") if s.strip()]


def add_operator_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Declare the operator subcommands on ``sub``."""
    raw = argparse.RawDescriptionHelpFormatter
    t = sub.add_parser(
        "tail", help="print a stream's new entries as they arrive (Ctrl-C stops)",
        formatter_class=raw,
        description="Follow STREAM and print each entry decoded as `id kind field=value ...`.\n"
        f"STREAM is a full name or one of: {', '.join((*PARTITION_KINDS, *VENUE_KINDS))}\n"
        "(a partition kind follows that stream of every partition).",
    )  # fmt: skip
    t.add_argument("stream", metavar="STREAM")
    t.add_argument("--from-start", action="store_true", help="print existing entries first")
    t.add_argument("--count", type=int, help="stop after this many entries")
    for action in ("subscribe", "unsubscribe"):
        p = sub.add_parser(
            action, help=f"ask the running ingestor to {action} symbols",
            description=f"Write a {action} request for SYMBOLS (comma or space separated) to the "
            "control stream of each symbol's partition; the ingestor applies it live.",
        )  # fmt: skip
        p.add_argument("symbols", nargs="+", metavar="SYMBOLS")
    k = sub.add_parser(
        "kill-switch", help="stop all trading (on), resume (off), or show it (status)",
        description="While the kill switch is on, the trader sends no order and cancels every "
        "working one. A running trader sees a change within 0.1 s.",
    )  # fmt: skip
    k.add_argument("state", choices=("on", "off", "status"))
    r = sub.add_parser(
        "replay", help="feed recorded sessions into the raw streams",
        formatter_class=raw,
        description="Write every frame of the recordings FILE... (files or directories, merged "
        "by receive time) as raw entries of\ntheir symbols' partitions, REST depth snapshots "
        "included, so a running processor builds trades, bars, books\nand signals as from a "
        "live ingestor. Formats (recognised from the content):\n"
        "  hftbacktest  `<time ns or us> <frame>` lines, gzip or text (shared/realdata)\n"
        "  cryptofeed   `<exchange>.ws.N.M` and `<exchange>.http.N.M` raw data collection files\n"
        "  tickpipe     `tickpipe export raw` Parquet or CSV files",
    )  # fmt: skip
    r.add_argument("files", type=Path, nargs="+", metavar="FILE")
    r.add_argument("--limit", type=int, help="replay at most this many frames")
    r.add_argument(
        "--speed", type=float, default=0.0, metavar="X",
        help="0 (default): as fast as possible; 1: at recorded speed; X: X times faster",
    )  # fmt: skip
    r.add_argument("--conn", help="connection id written with the frames (default replay-FILE)")
    e = sub.add_parser(
        "export", help="write a stream's time range (trades, bars, book, raw...) to parquet or CSV",
        description="Read KIND for a symbol and time range (ISO times or ns; end exclusive) "
        "into a DataFrame and write it; only the range is read from Redis. bars1s/bars1m keep "
        "the latest revision of each bar. `raw` writes the raw entries of the symbol's partition "
        "(every partition without --symbol) in the format `tickpipe replay` reads back.",
    )  # fmt: skip
    e.add_argument("kind", choices=EXPORT_KINDS, metavar="KIND", help=" | ".join(EXPORT_KINDS))
    e.add_argument(
        "--symbol", help="symbol (optional for signals, gaps, orders, raw and positions: all)"
    )
    e.add_argument("--start", help="first time, e.g. 2024-08-09T00:00:00 (UTC)")
    e.add_argument("--end", help="end time (exclusive)")
    e.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    e.add_argument(
        "--from", dest="source", choices=("redis", "archive"), default="redis",
        help="read Redis (default) or the archive's Parquet files (TICKPIPE_ARCHIVE_DIR)",
    )  # fmt: skip
    e.add_argument("--out", type=Path, required=True, metavar="FILE")


def _time(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.isdigit() else text


async def _run(settings: Settings, url: str, args: argparse.Namespace) -> int:
    redis = connect_redis(url)
    try:
        async with redis_errors():  # a refused login or command: exit 2 with Redis' reason
            await _command(settings, url, args, redis)
    except RedisUnavailable as exc:
        print(f"tickpipe {args.command}: {unavailable_line(url, exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"tickpipe {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    return 0


async def _command(
    settings: Settings, url: str, args: argparse.Namespace, redis: aioredis.Redis
) -> None:
    """Run one operator command on ``redis``."""
    if args.command == "tail":
        streams = resolve_streams(settings, args.stream)
        await tail(
            redis, streams, sys.stdout, from_start=args.from_start, count=args.count,
            on_ready=lambda: print(
                f"following {', '.join(streams)} (Ctrl-C stops)", file=sys.stderr, flush=True
            ),
        )  # fmt: skip
    elif args.command in ("subscribe", "unsubscribe"):
        symbols = _symbols(args.symbols)
        for line in await change_subscription(redis, settings, args.command, symbols):
            print(line)
    elif args.command == "kill-switch":
        on = await set_kill_switch(redis, settings, args.state)
        print(f"kill switch for {settings.venue}: {'ON' if on else 'off'}")
    elif args.command == "replay":
        stats = RecordingStats()
        records = read_recordings(args.files, stats)  # an unreadable FILE: exit 2
        names = ", ".join(str(f) for f in args.files)
        print(f"replaying {names} into {redacted(url)}", file=sys.stderr)
        await replay_file(
            redis, settings, records, limit=args.limit, speed=args.speed,
            conn=args.conn or f"replay-{args.files[0].name}", fraction=stats.fraction,
        )  # fmt: skip
        if stats.skipped_rest or stats.skipped_lines:
            print(
                f"tickpipe replay: left out {stats.skipped_rest:,} REST answers that are not "
                f"depth snapshots and {stats.skipped_lines:,} unreadable lines",
                file=sys.stderr,
            )
    elif args.command == "export":
        symbol = args.symbol.upper() if args.symbol else None
        parquet = args.format == "parquet"
        need("parquet" if parquet else "pandas", f"tickpipe export --format {args.format}")
        from tickpipe.archive.shell import archive_root
        from tickpipe.tools.frames import Archive, read_kind  # pandas: only now it is there

        source = Archive(archive_root(settings)) if args.source == "archive" else redis
        print(f"reading {args.kind} from {args.source} ...", file=sys.stderr)
        frame = await read_kind(
            source, settings, args.kind, symbol, _time(args.start), _time(args.end)
        )
        if parquet:
            frame.to_parquet(args.out)
        else:
            frame.to_csv(args.out)
        print(f"wrote {len(frame):,} rows to {args.out}", file=sys.stderr)


def run_operator_command(settings: Settings, url: str, args: argparse.Namespace) -> int:
    """Run one operator command; Ctrl-C or SIGTERM ends it cleanly (exit 0)."""

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await _run(settings, url, args)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped", file=sys.stderr)
        return 0
