"""Run the mock exchange as a process: ``python -m tickpipe.mock_ws --binance-port 9443``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import errno
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from tickpipe.common.errors import ConfigError
from tickpipe.common.logs import setup_logging
from tickpipe.common.procs import check_port
from tickpipe.common.settings import load_settings
from tickpipe.common.stage import add_env_file
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.binance.auth import load_ed25519_key
from tickpipe.mock_ws.faults import FaultError, FaultPlan, load_fault_file
from tickpipe.mock_ws.scenarios import ScenarioError, parse_scenarios, regime_from
from tickpipe.mock_ws.tls import TlsFiles, server_context
from tickpipe.mock_ws.tls import generate as generate_tls

log = logging.getLogger("tickpipe.mock_ws")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tickpipe.mock_ws",
        description=(
            "Run a local Binance-Spot-compatible exchange on loopback, all on one port: "
            "market streams (/ws, /ws/<streams>, /stream?streams=: trade, aggTrade, "
            "bookTicker, depth diffs, partial depth), the WebSocket API (/ws-api/v3), REST "
            "/api/v3 (ping, time, exchangeInfo, depth, trades, historicalTrades, aggTrades, "
            "order, openOrders, account, userDataStream), and the control endpoints "
            "/_mock/status and /_mock/faults (GET lists, POST adds, DELETE clears faults). "
            "The API key and secret come from BINANCE_API_KEY / BINANCE_API_SECRET "
            "(environment or .env), else mock-key / mock-secret."
        ),
    )
    parser.add_argument(
        "--binance-port", type=int, default=9443, help="port to listen on; 0 = any free port"
    )
    parser.add_argument(
        "--alpaca-port",
        type=int,
        default=None,
        metavar="P",
        help=(
            "also run the Alpaca venue on port P (0 = any free port): data streams /v2/iex, "
            "/v2/sip, /v2/test, /v1beta3/crypto/us, trading stream /stream, REST /v2/...; "
            "same key and secret; default off"
        ),
    )
    parser.add_argument(
        "--alpaca-hours",
        choices=("venue", "always"),
        default="venue",
        help=(
            "with --alpaca-port: 'venue' trades stocks (AAPL) in NYSE's regular session only, "
            "holding orders as accepted until the open and expiring DAY orders at the close; "
            "'always' trades them around the clock for demos (default venue)"
        ),
    )
    parser.add_argument(
        "--listen-key-retired-at",
        default=None,
        metavar="ISO8601",
        help=(
            "from this UTC time on (e.g. 2026-01-01T00:00:00), the legacy REST listenKey "
            "endpoints are gone (404), as the venue's changelog retires them; default: they work"
        ),
    )
    parser.add_argument(
        "--ibkr-port",
        type=int,
        default=None,
        metavar="P",
        help=(
            "also run an IBKR Client Portal gateway on port P (0 = any free port): REST "
            "/v1/api/... and the WebSocket /v1/api/ws (AAPL, MSFT, SPY); default off"
        ),
    )
    parser.add_argument(
        "--ibkr-session-timeout",
        type=float,
        default=360.0,
        metavar="S",
        help="IBKR: the session expires S seconds after the last tickle/tic (default 360)",
    )
    parser.add_argument(
        "--ibkr-penalty",
        type=float,
        default=600.0,
        metavar="S",
        help="IBKR: seconds in the penalty box after the global rate limit (default 600)",
    )
    parser.add_argument(
        "--ibkr-md-expiry",
        type=float,
        default=600.0,
        metavar="S",
        help="IBKR: smd subscriptions end S seconds after they were sent (default 600)",
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
        help=(
            'file that gets {"binance_port": P, "tls": false} once the mock listens (useful '
            'with port 0); with TLS also "ca_file"'
        ),
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between server pings; no pong within 3 intervals disconnects (default 20)",
    )
    parser.add_argument(
        "--faults",
        default=None,
        metavar="FILE",
        help=(
            'fault plan to run: a JSON or YAML list of faults (or {"faults": [...]}), each '
            "firing 'at' seconds after start; more can be POSTed to /_mock/faults mid-run"
        ),
    )
    parser.add_argument(
        "--lifetime",
        type=float,
        default=None,
        metavar="S",
        help="close every connection S seconds after it opened (Binance: 86400); default never",
    )
    parser.add_argument(
        "--scenario",
        default=None,
        metavar="SPEC",
        help=(
            "market scenarios: comma-separated NAME[:SYMBOL][@AT][+DURATION] (NAME: calm, "
            "trend, crash, spike, halt, burst; AT and DURATION in seconds), e.g. "
            "crash:BTCUSDT@10+30,burst@0+5; or a JSON list of {name, symbol, at, duration, "
            "pct, factor}; more can be POSTed to /_mock/scenario"
        ),
    )
    parser.add_argument(
        "--replay",
        default=None,
        metavar="PATH",
        help=(
            "serve a recorded Binance session (a file or directory of hftbacktest .gz or "
            "cryptofeed BINANCE.ws.*/BINANCE.http.* recordings) instead of the simulated "
            "market; its symbols replace --symbols; REST depth follows the replay position"
        ),
    )
    parser.add_argument(
        "--replay-speed",
        type=float,
        default=1.0,
        metavar="X",
        help="with --replay: play X times faster than recorded (default 1; 0 = no pauses)",
    )
    parser.add_argument(
        "--blast",
        action="store_true",
        help=(
            "benchmark mode: <symbol>@trade streams named in the URL get pre-encoded trade "
            "frames (contiguous ids from 1 per connection) as fast as the client reads"
        ),
    )
    parser.add_argument(
        "--blast-rate",
        type=float,
        default=0.0,
        metavar="N",
        help="with --blast: send N frames per second per stream (default 0 = unlimited)",
    )
    parser.add_argument(
        "--blast-symbols",
        default="",
        metavar="SYMS",
        help=(
            "with --blast: comma-separated symbols whose trades are blasted; the others trade "
            "in the simulated market (default: every symbol is blasted)"
        ),
    )
    parser.add_argument(
        "--weight-limit",
        type=int,
        default=6000,
        metavar="N",
        help="REST request-weight budget per IP and minute; over it: 429 (default 6000)",
    )
    parser.add_argument(
        "--ed25519-key",
        action="append",
        default=[],
        metavar="KEY=PEMFILE",
        help=(
            "accept API key KEY signed with the Ed25519 private key whose public key is in "
            "PEMFILE (REST, WS-API, session.logon); repeatable"
        ),
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help=(
            "serve wss:// and https:// (as the venues do) with a new certificate signed by a new "
            "CA; the CA file is written next to --ready-file (or into --tls-dir) as ca.pem and "
            "named in the ready file as ca_file: clients trust it with SSL_CERT_FILE (requests: "
            "REQUESTS_CA_BUNDLE) or TICKPIPE_CA_FILE"
        ),
    )
    parser.add_argument(
        "--tls-dir",
        default=None,
        metavar="DIR",
        help="with --tls: where to write ca.pem, cert.pem and key.pem (default: the ready "
        "file's folder, else ./.tickpipe/mock-tls)",
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve TLS with this certificate chain instead of a generated one (with --tls-key)",
    )
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="the --tls-cert's key")
    parser.add_argument(
        "--tls-ca",
        default=None,
        metavar="PEM",
        help="with --tls-cert: the CA file to name in the ready file (default: --tls-cert)",
    )
    parser.add_argument(
        "--clock-offset-ms",
        type=int,
        default=0,
        metavar="MS",
        help=(
            "run the venue's clock MS milliseconds ahead of this host's (negative: behind): "
            "event times, server time and the recvWindow check all follow it (default 0)"
        ),
    )
    add_env_file(parser)
    return parser


def _retired_ns(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--listen-key-retired-at {text}: give an ISO 8601 time, e.g. 2026-01-01T00:00:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1_000_000_000)


def _tls_files(args: argparse.Namespace) -> TlsFiles | None:
    """Return the certificate to serve (generating one for --tls); ConfigError if unusable."""
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: give both PEM files")
        files = TlsFiles(
            Path(args.tls_cert), Path(args.tls_key), Path(args.tls_ca or args.tls_cert)
        )
    elif args.tls:
        folder = args.tls_dir
        if folder is None:
            folder = Path(args.ready_file).parent if args.ready_file else ".tickpipe/mock-tls"
        try:
            files = generate_tls(folder, [args.host], datetime.datetime.now(datetime.UTC))
        except OSError as exc:
            raise ConfigError(f"--tls-dir {folder}: cannot write the certificate: {exc}") from None
    else:
        return None
    try:
        server_context(files)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return files


async def _serve(
    args: argparse.Namespace,
    api_key: str,
    api_secret: str,
    faults: list[dict[str, Any]],
    ed_keys: dict[str, bytes],
    scenarios: list[dict[str, Any]],
    tls: TlsFiles | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    mock = await start_mock(
        binance_port=args.binance_port,
        alpaca_port=args.alpaca_port,
        host=args.host,
        seed=args.seed,
        symbols=symbols,
        trades_per_s=args.rate,
        api_key=api_key,
        api_secret=api_secret,
        ground_truth_path=args.ground_truth,
        ping_interval_s=args.ping_interval,
        faults=faults,
        lifetime_s=args.lifetime,
        rest_weight_limit=args.weight_limit,
        ed25519_keys=ed_keys,
        scenarios=scenarios,
        blast=args.blast,
        blast_rate=args.blast_rate,
        blast_symbols=[s.strip().upper() for s in args.blast_symbols.split(",") if s.strip()],
        replay=args.replay,
        replay_speed=args.replay_speed,
        tls=tls,
        alpaca_hours=args.alpaca_hours,
        listen_key_retired_ns=args.listen_key_retired_ns,
        ibkr_port=args.ibkr_port,
        ibkr_options={
            "session_timeout_s": args.ibkr_session_timeout,
            "penalty_s": args.ibkr_penalty,
            "md_expiry_s": args.ibkr_md_expiry,
        },
        clock=_skewed_clock(args.clock_offset_ms),
    )
    try:
        log.info(
            "listening",
            extra={"port": mock.binance_port, "ws_url": mock.ws_url, "symbols": symbols},
        )
        if args.ready_file:
            ready = Path(args.ready_file)
            tmp = ready.with_name(ready.name + ".tmp")
            ready_info: dict[str, Any] = {"binance_port": mock.binance_port}
            if mock.alpaca_port is not None:
                ready_info["alpaca_port"] = mock.alpaca_port
            if mock.ibkr_port is not None:
                ready_info["ibkr_port"] = mock.ibkr_port
            ready_info["tls"] = mock.ca_file is not None
            if mock.ca_file is not None:
                ready_info["ca_file"] = str(Path(mock.ca_file).resolve())
            tmp.write_bytes(orjson.dumps(ready_info))
            os.replace(tmp, ready)
        # The market's start-up state lives all run: keep it out of full collections, which
        # otherwise held the loop for 250-350 ms at a time (its history is a large heap).
        gc.freeze()
        await stop.wait()
        log.info("stopping")
    finally:
        await mock.close()


def _skewed_clock(offset_ms: int) -> Callable[[], int] | None:
    """Return the venue's wall clock, ``offset_ms`` off this host's (None: the host's own)."""
    if not offset_ms:
        return None
    offset_ns = offset_ms * 1_000_000
    return lambda: time.time_ns() + offset_ns


def _load_faults(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        faults = load_fault_file(path)
        plan = FaultPlan()
        for spec in faults:
            plan.add(spec, 0)
    except OSError as exc:
        raise ConfigError(f"--faults {path}: cannot read: {exc}") from None
    except FaultError as exc:
        raise ConfigError(f"--faults {path}: {exc}") from None
    return faults


def _load_scenarios(text: str | None, symbols: str) -> list[dict[str, Any]]:
    if not text:
        return []
    listed = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    try:
        specs = parse_scenarios(text)
        for spec in specs:
            regime_from(spec, 0, listed)
    except ScenarioError as exc:
        raise ConfigError(f"--scenario {text}: {exc}") from None
    return specs


def _load_ed_keys(specs: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for spec in specs:
        key, sep, path = spec.partition("=")
        if not sep or not key or not path:
            raise ConfigError(f"--ed25519-key {spec}: give KEY=PEMFILE")
        try:
            pem = Path(path).read_bytes()
            load_ed25519_key(pem)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--ed25519-key {spec}: {exc}") from None
        out[key] = pem
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the mock until SIGTERM/SIGINT; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(dotenv_path=args.env_file)
        if args.binance_port < 0 or args.binance_port > 65535:
            raise ConfigError(f"--binance-port {args.binance_port}: give a port 0..65535")
        if args.alpaca_port is not None and not 0 <= args.alpaca_port <= 65535:
            raise ConfigError(f"--alpaca-port {args.alpaca_port}: give a port 0..65535")
        if args.ibkr_port is not None and not 0 <= args.ibkr_port <= 65535:
            raise ConfigError(f"--ibkr-port {args.ibkr_port}: give a port 0..65535")
        for name in ("ibkr_session_timeout", "ibkr_penalty", "ibkr_md_expiry"):
            if not getattr(args, name) > 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {getattr(args, name)}: give a positive number")
        if not args.rate > 0:
            raise ConfigError(f"--rate {args.rate}: give a positive trade rate")
        if not args.ping_interval > 0:
            raise ConfigError(f"--ping-interval {args.ping_interval}: give a positive number")
        if not any(s.strip() for s in args.symbols.split(",")):
            raise ConfigError("--symbols: give at least one symbol, e.g. BTCUSDT,ETHUSDT")
        if args.replay is not None and not Path(args.replay).exists():
            raise ConfigError(f"--replay {args.replay}: no such file or directory")
        if args.replay_speed < 0:
            raise ConfigError(f"--replay-speed {args.replay_speed}: give 0 or a positive factor")
        if args.blast_rate < 0:
            raise ConfigError(f"--blast-rate {args.blast_rate}: give 0 or a positive rate")
        if args.blast_symbols and not args.blast:
            raise ConfigError("--blast-symbols needs --blast")
        listed = {s.strip().upper() for s in args.symbols.split(",") if s.strip()}
        unknown = sorted({s.strip().upper() for s in args.blast_symbols.split(",")} - listed - {""})
        if unknown and not args.replay:
            raise ConfigError(f"--blast-symbols {','.join(unknown)}: not in --symbols")
        if args.weight_limit < 1:
            raise ConfigError(f"--weight-limit {args.weight_limit}: give a positive number")
        if args.lifetime is not None and not args.lifetime > 0:
            raise ConfigError(f"--lifetime {args.lifetime}: give a positive number of seconds")
        check_port(args.host, args.binance_port, f"--binance-port {args.binance_port}")
        if args.alpaca_port:
            check_port(args.host, args.alpaca_port, f"--alpaca-port {args.alpaca_port}")
        if args.ibkr_port:
            check_port(args.host, args.ibkr_port, f"--ibkr-port {args.ibkr_port}")
        faults = _load_faults(args.faults)
        ed_keys = _load_ed_keys(args.ed25519_key)
        scenarios = _load_scenarios(args.scenario, args.symbols)
        tls = _tls_files(args)
        args.listen_key_retired_ns = _retired_ns(args.listen_key_retired_at)
    except ConfigError as exc:
        print(f"tickpipe mock_ws: configuration error: {exc}", file=sys.stderr)
        return 2
    api_key = settings.binance_api_key.reveal() or "mock-key"
    api_secret = settings.binance_api_secret.reveal() or "mock-secret"
    setup_logging(
        "mock_ws", settings.instance, level=settings.log_level, secrets=[api_key, api_secret]
    )
    try:
        asyncio.run(_serve(args, api_key, api_secret, faults, ed_keys, scenarios, tls))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):  # taken since
            print(f"tickpipe mock_ws: configuration error: cannot listen: {exc}", file=sys.stderr)
            return 2
        log.error("cannot listen: %s", exc)
        return 1
    except ValueError as exc:  # an unreadable --replay recording
        print(f"tickpipe mock_ws: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
