"""Run a stage the same way everywhere: settings, logging, signals, ``--check``, exit codes.

Each stage's ``__main__`` calls :func:`stage_main` with its ``run(settings, stop)`` coroutine.
SIGTERM or SIGINT sets ``stop`` (finish the current batch, then return); a second signal cancels the
run at once. Exit codes: 0 clean stop, 1 failure, 2 bad configuration. Every stage runs under
umask 077: the files it writes (the ingestor's spill journal) are private to its user.
``--check`` exits 0 only when every live instance of the stage reports itself well (``ok``, or a
trader on ``standby``) and one is ``ok``: a container's health check fails while any replica is
not. Without ``REDIS_URL`` it reads a running embedded default (``tickpipe up``) as its operator
user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from tickpipe.common.embedded import discover_redis_url
from tickpipe.common.errors import ConfigError, TickpipeError
from tickpipe.common.health import read_health
from tickpipe.common.logs import setup_logging
from tickpipe.common.privacy import PRIVATE_UMASK
from tickpipe.common.procs import check_port
from tickpipe.common.redis_io import (
    REDIS_ERRORS,
    connect_redis,
    is_redis_down,
    preflight_redis,
    unavailable_line,
)
from tickpipe.common.settings import Settings, load_settings

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "add_env_file",
    "base_parser",
    "install_event_loop",
    "stage_main",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

RunFn = Callable[[Settings, asyncio.Event], Awaitable[None]]
#: Health statuses of a replica that is well (``standby``: a trader ready to take over).
HEALTHY = frozenset({"ok", "standby"})


def add_env_file(parser: argparse.ArgumentParser) -> None:
    """Add ``--env-file``, the dotenv file every command reads its settings from."""
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if every live instance of this stage reports healthy in Redis, else 1",
    )
    add_env_file(parser)
    return parser


async def _check(settings: Settings, service: str) -> int:
    url = discover_redis_url(settings)
    redis = connect_redis(url)
    try:
        records = await read_health(redis, settings.keys, service)
    except REDIS_ERRORS as exc:
        if not is_redis_down(exc):
            raise
        print(f"{service}: {unavailable_line(url, exc)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        await redis.aclose()
    for r in records:
        print(f"{service} {r.get('instance')}: {r.get('status')}")
    if not records:
        print(f"{service}: no running instance reports health", file=sys.stderr)
    # Every replica must be well (a standby is: it is ready to take over) and one must work.
    statuses = [r.get("status") for r in records]
    healthy = "ok" in statuses and all(s in HEALTHY for s in statuses)
    return EXIT_OK if healthy else EXIT_FAILURE


def install_event_loop() -> None:
    """Use uvloop's event loop from here on, when it is installed."""
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        pass


async def _run_with_signals(run: RunFn, settings: Settings) -> None:
    # A taken metrics port or a wrong password is the user's mistake: say so once (exit 2),
    # instead of running without metrics or retrying forever.
    port = settings.metrics_port
    check_port("127.0.0.1", port, f"TICKPIPE_METRICS_PORT={port}")
    await preflight_redis(settings.redis_url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None

    def on_signal() -> None:
        if stop.is_set():
            logging.getLogger("tickpipe").warning("second signal: stopping now")
            task.cancel()
        else:
            logging.getLogger("tickpipe").info("signal received: finishing current work")
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await run(settings, stop)


def stage_main(
    service: str,
    run: RunFn,
    *,
    argv: Sequence[str] | None = None,
    parser: argparse.ArgumentParser | None = None,
    overrides: Callable[[argparse.Namespace], dict[str, str]] | None = None,
) -> int:
    """Parse arguments, load settings, and run ``run`` until stopped; return the exit code."""
    parser = parser or base_parser(f"python -m {service}", f"tickpipe {service} stage")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            dotenv_path=args.env_file, overrides=overrides(args) if overrides else None
        )
    except ConfigError as exc:
        print(f"tickpipe {service}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    os.umask(PRIVATE_UMASK)
    setup_logging(service, settings.instance, level=settings.log_level, secrets=settings.secrets())
    if args.check:
        try:
            return asyncio.run(_check(settings, service))
        except ConfigError as exc:
            print(f"tickpipe {service}: configuration error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    install_event_loop()
    # What import and set-up made lives as long as the process: keep it out of the collector's
    # scans, or each full collection stalls the event loop (15-25 ms in the ingestor and the
    # trader, measured with gc.callbacks during the latency bench).
    gc.freeze()
    log = logging.getLogger(f"tickpipe.{service}")
    try:
        asyncio.run(_run_with_signals(run, settings))
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    except (KeyboardInterrupt, asyncio.CancelledError):
        return EXIT_OK
    except TickpipeError as exc:
        log.error("stopped: %s", exc)
        return EXIT_FAILURE
    with contextlib.suppress(Exception):
        logging.shutdown()
    return EXIT_OK
