"""Command line entry point: ``tickpipe up|streams|tail|export|replay|backtest|...``, stages."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tickpipe.common.embedded import discover_redis_url, url_password
from tickpipe.common.errors import ConfigError, RedisUnavailable
from tickpipe.common.logs import setup_logging
from tickpipe.common.redis_io import connect_redis, redacted, redis_errors, unavailable_line
from tickpipe.common.settings import Settings, load_settings
from tickpipe.common.stage import add_env_file
from tickpipe.common.status import read_streams, render_streams
from tickpipe.tools.cli_backtest import add_backtest_command, run_backtest_command
from tickpipe.tools.cli_ops import OPERATOR_COMMANDS, add_operator_commands, run_operator_command

__all__ = ["main"]

STAGE_MODULES = {
    "mock": "tickpipe.mock_ws", "ingest": "tickpipe.ingestor", "process": "tickpipe.processor",
    "trade": "tickpipe.trader",
    "dashboard": "tickpipe.dashboard", "archive": "tickpipe.archive",
}  # fmt: skip
#: Tools that, like the stages, run as their own module with their own flags.
TOOL_MODULES = {"bench": "bench", "acl": "tickpipe.deploy.acl"}
EXEC_MODULES = {**STAGE_MODULES, **TOOL_MODULES}

EPILOG = """\
stages (each also runs alone as `python -m <module>`; pass --help after the stage for its flags):
  tickpipe mock      the mock exchange (python -m mock_ws)
  tickpipe ingest    the ingestor (python -m ingestor)
  tickpipe process   a processor member (python -m processor)
  tickpipe trade     the trader (python -m trader)
  tickpipe dashboard the live dashboard (python -m dashboard; TICKPIPE_DASHBOARD_PORT, default 8050)
  tickpipe archive   streams to partitioned Parquet (python -m archive; TICKPIPE_ARCHIVE=on)

tools:
  tickpipe bench     the benchmarks (python -m bench; --quick for a short run)
  tickpipe acl       Redis ACL users per stage (python -m tickpipe.deploy.acl; docs/deploying.md)

configuration comes from the environment and .env; see .env.example for every setting.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickpipe",
        description="Real-time market data and trading pipeline over WebSockets and Redis Streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_env_file(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the whole pipeline locally (own redis-server and mock exchange by default)",
        description="Start redis-server (when REDIS_URL is unset), the mock exchange (when no "
        "venue URL is configured), the ingestor, processor member(s) and the trader, each its own "
        "process; restart crashed stages; show a live status line. Ctrl-C stops everything.",
    )
    up.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    up.add_argument("--processors", type=int, default=1, help="processor members (default 1)")
    up.add_argument("--data-dir", type=Path, help="state, logs, embedded Redis data")
    up.add_argument("--no-mock", action="store_true", help="never start the mock exchange")
    up.add_argument("--rate", type=float, default=20.0, help="mock trades per second per symbol")
    up.add_argument("--seed", type=int, default=1, help="mock market seed (default 1)")
    up.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    up.add_argument(
        "--no-tls", action="store_true",
        help="serve the mock over plain ws:// and http:// (default: wss:// and https:// with a "
        "CA generated under the data directory, as the venues only speak TLS)",
    )  # fmt: skip
    up.add_argument(
        "--no-demo", action="store_true",
        help="on the mock, schedule no market moves and add no demo strategies (default: a "
        "spike, a crash and a recovery every 75 s, rapid_move and a passive LIMIT; see README)",
    )  # fmt: skip
    up.add_argument(
        "--ground-truth", type=Path, metavar="FILE",
        help="have the mock log every frame it sends and every order it gets (JSON lines)",
    )  # fmt: skip

    sub.add_parser(
        "streams",
        help="print every stream's length, consumer groups, pending count and lag",
        description="Print every stream of the namespace with its length, last id, and per "
        "consumer group the pending count and lag. Needs REDIS_URL (or the embedded default "
        "started by `tickpipe up`, found through .tickpipe/redis.url).",
    )
    for name, module in STAGE_MODULES.items():
        sub.add_parser(name, help=f"run the {module} stage alone", add_help=False)
    for name, module in TOOL_MODULES.items():
        sub.add_parser(name, help=f"run {module} (see its --help)", add_help=False)
    add_operator_commands(sub)
    add_backtest_command(sub)
    for name, command in sub.choices.items():  # `tickpipe up --env-file F` works too
        if name not in EXEC_MODULES:
            command.add_argument(
                "--env-file", default=argparse.SUPPRESS, help="dotenv file to read (default: .env)"
            )
    return parser


async def _streams(settings: Settings, url: str) -> int:
    redis = connect_redis(url)
    try:
        async with redis_errors():
            streams = await read_streams(redis, settings)
    except RedisUnavailable as exc:
        print(f"tickpipe streams: {unavailable_line(url, exc)}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
    if not streams:
        print(f"no streams under namespace {settings.namespace!r} at {redacted(url)}")
        return 0
    print("\n".join(render_streams(streams)))
    return 0


async def _up(settings: Settings, args: argparse.Namespace) -> int:
    from tickpipe.tools.supervisor import UpOptions, run_up

    data_dir = args.data_dir or Path(settings.data_dir)
    options = UpOptions(
        duration_s=args.duration,
        processors=args.processors,
        mock=False if args.no_mock else None,
        mock_rate=args.rate,
        mock_seed=args.seed,
        mock_tls=not args.no_tls,
        ground_truth=args.ground_truth,
        demo=not args.no_demo,
        dashboard=not args.no_dashboard,
        data_dir=data_dir,
        env_file=args.env_file,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_up(settings, options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # Stage commands hand everything after the command to the stage's own parser.
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--env-file" else 1
    if i < len(argv) and argv[i] in EXEC_MODULES:
        module = EXEC_MODULES[argv[i]]
        os.execv(sys.executable, [sys.executable, "-m", module, *argv[:i], *argv[i + 1 :]])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = load_settings(dotenv_path=args.env_file)
    except ConfigError as exc:
        print(f"tickpipe: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        # The operator commands log in to a running embedded default as its operator user.
        url = settings.redis_url if args.command == "up" else discover_redis_url(settings)
    except ConfigError as exc:
        print(f"tickpipe {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    secrets = [*settings.secrets(), *filter(None, [url_password(url)])]
    setup_logging("tickpipe", settings.instance, level="WARNING", secrets=secrets)
    try:
        if args.command == "streams":
            return asyncio.run(_streams(settings, url))
        if args.command == "up":
            from tickpipe.processor.plugins import build_strategies

            build_strategies(settings)  # a strategy mistake is reported before anything starts
            return asyncio.run(_up(settings, args))
        if args.command == "backtest":
            from tickpipe.processor.plugins import build_strategies

            build_strategies(settings)  # a strategy mistake is reported before reading input
            return run_backtest_command(settings, url, args)
        if args.command in OPERATOR_COMMANDS:
            return run_operator_command(settings, url, args)
    except ConfigError as exc:
        print(f"tickpipe {args.command}: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
