"""Run the mock exchange as a process: ``python -m mock_ws --binance-port 9443``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from common.errors import ConfigError
from common.logs import setup_logging
from common.settings import load_settings
from mock_ws import start_mock

log = logging.getLogger("tickpipe.mock_ws")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mock_ws",
        description=(
            "Run a local Binance-Spot-compatible exchange on loopback: market streams "
            "(/ws, /stream), the WebSocket API (/ws-api/v3), REST (/api/v3/ping|time|"
            "exchangeInfo) and /_mock/status, all on one port. The API key and secret come "
            "from BINANCE_API_KEY / BINANCE_API_SECRET (environment or .env), else "
            "mock-key / mock-secret."
        ),
    )
    parser.add_argument(
        "--binance-port", type=int, default=9443, help="port to listen on; 0 = any free port"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--seed", type=int, default=1, help="market simulation seed (default 1)")
    parser.add_argument(
        "--symbols",
        default="BTCUSDT,ETHUSDT",
        help="comma-separated symbols to list (default BTCUSDT,ETHUSDT)",
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="mean trades per second per symbol (default 20)"
    )
    parser.add_argument(
        "--ground-truth", default=None, help="JSON-lines file for the ground-truth log"
    )
    parser.add_argument(
        "--ready-file",
        default=None,
        help='file that gets {"binance_port": P} once the mock listens (useful with port 0)',
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between server pings; no pong within 3 intervals disconnects (default 20)",
    )
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    return parser


async def _serve(args: argparse.Namespace, api_key: str, api_secret: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    mock = await start_mock(
        binance_port=args.binance_port,
        host=args.host,
        seed=args.seed,
        symbols=symbols,
        trades_per_s=args.rate,
        api_key=api_key,
        api_secret=api_secret,
        ground_truth_path=args.ground_truth,
        ping_interval_s=args.ping_interval,
    )
    try:
        log.info(
            "listening",
            extra={"port": mock.binance_port, "ws_url": mock.ws_url, "symbols": symbols},
        )
        if args.ready_file:
            ready = Path(args.ready_file)
            tmp = ready.with_name(ready.name + ".tmp")
            tmp.write_bytes(orjson.dumps({"binance_port": mock.binance_port}))
            os.replace(tmp, ready)
        await stop.wait()
        log.info("stopping")
    finally:
        await mock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the mock until SIGTERM/SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(dotenv_path=args.env_file)
        if args.binance_port < 0 or args.binance_port > 65535:
            raise ConfigError(f"--binance-port {args.binance_port}: give a port 0..65535")
        if not args.rate > 0:
            raise ConfigError(f"--rate {args.rate}: give a positive trade rate")
        if not args.ping_interval > 0:
            raise ConfigError(f"--ping-interval {args.ping_interval}: give a positive number")
        if not any(s.strip() for s in args.symbols.split(",")):
            raise ConfigError("--symbols: give at least one symbol, e.g. BTCUSDT,ETHUSDT")
    except ConfigError as exc:
        print(f"tickpipe mock_ws: configuration error: {exc}", file=sys.stderr)
        return 2
    api_key = settings.binance_api_key.reveal() or "mock-key"
    api_secret = settings.binance_api_secret.reveal() or "mock-secret"
    setup_logging(
        "mock_ws", settings.instance, level=settings.log_level, secrets=[api_key, api_secret]
    )
    try:
        asyncio.run(_serve(args, api_key, api_secret))
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
