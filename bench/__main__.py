"""Run the benchmarks and print one table: ``python -m bench [--quick] [NAMES...]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from bench.archive import run_archive
from bench.ingest import run_ingest, run_reconnect
from bench.latency import RATES, run_latency
from bench.peer import run_peer
from bench.process import run_process, run_takeover
from bench.replay import run_replay
from bench.scaling import run_scaling
from bench.soak import run_soak
from bench.stats import Row, format_table
from bench.ws_client_cost import run_ws_client
from tickpipe.common.stage import install_event_loop

__all__ = ["BENCHES", "machine", "main"]

Bench = Callable[[argparse.Namespace], Awaitable[list[Row]]]


async def _recovery(args: argparse.Namespace) -> list[Row]:
    return [*await run_takeover(args.quick), *await run_reconnect(args.quick)]


BENCHES: dict[str, Bench] = {
    "ingest": lambda a: run_ingest(a.quick),
    "processor": lambda a: run_process(a.quick),
    "latency": lambda a: run_latency(
        a.quick, a.latency_seconds, gc_probe=a.gc_probe, rates=a.latency_rates
    ),
    "recovery": _recovery,
    "soak": lambda a: run_soak(a.quick, a.soak_minutes),
    "replay": lambda a: run_replay(a.quick),
    "peer": lambda a: run_peer(a.quick, count=a.peer_trades, reps=a.peer_reps),
    "archive": lambda a: run_archive(a.quick),
    "ws-client": lambda a: run_ws_client(a.quick),
    "scaling": lambda a: run_scaling(
        a.quick, count=a.scaling_trades, paced_rate=a.scaling_rate, seconds=a.scaling_seconds
    ),
}


def machine() -> str:
    """Describe the machine: CPU model, core count, Python version."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}, "
        f"{platform.system()}, load average at the end {load}"
    )


def _rates(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole trades/s: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure tickpipe's throughput, latency, recovery and memory against "
        "references measured in the same run; print one Markdown table.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default all): {', '.join(BENCHES)}",
    )
    parser.add_argument("--quick", action="store_true", help="short runs (about 2 minutes in all)")
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=10.0,
        help="length of the memory soak (default 10; --quick: 1)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="measured window per rate of the latency benchmark (default 30; --quick: 3)",
    )
    parser.add_argument(
        "--latency-rates",
        type=_rates,
        default=RATES,
        metavar="R[,R...]",
        help="trade rates (trades/s) of the latency benchmark (default 1000,5000,10000)",
    )
    parser.add_argument(
        "--gc-probe",
        action="store_true",
        help="latency: record every pipeline process's GC pauses (CPU time) and print them",
    )
    parser.add_argument(
        "--peer-trades",
        type=int,
        default=None,
        help="trades per run of the peer benchmark (default 300,000; --quick: 20,000)",
    )
    parser.add_argument(
        "--peer-reps",
        type=int,
        default=None,
        help="repetitions of the peer benchmark (default 5; --quick: 1)",
    )
    parser.add_argument(
        "--scaling-trades",
        type=int,
        default=None,
        help="trades per throughput run of the scaling benchmark (default 200,000; --quick: "
        "30,000)",
    )
    parser.add_argument(
        "--scaling-rate",
        type=int,
        default=None,
        help="trades/s of the scaling benchmark's latency runs (default 2,000)",
    )
    parser.add_argument(
        "--scaling-seconds",
        type=float,
        default=None,
        help="length of each scaling latency run (default 10; --quick: 3)",
    )
    return parser


async def _run(names: Sequence[str], args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows += await BENCHES[name](args)
        except Exception as exc:  # one failed benchmark must not hide the others
            rows.append(Row(name, "FAILED", f"{type(exc).__name__}: {exc}"[:160]))
        print(f"  {name} took {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; return 0, or 1 when one failed to run."""
    args = build_parser().parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {list(BENCHES)}", file=sys.stderr)
        return 2
    if args.soak_minutes <= 0:
        print("--soak-minutes must be positive", file=sys.stderr)
        return 2
    sizes = [args.peer_trades, args.peer_reps, args.latency_seconds, args.scaling_trades]
    sizes += [args.scaling_rate, args.scaling_seconds]
    if any(n is not None and n <= 0 for n in sizes):
        print(
            "--peer-trades, --peer-reps, --latency-seconds and --scaling-* must be positive",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.ERROR)
    # The in-process stages log what the blast server does not serve (REST snapshots); the table
    # reports what matters.
    logging.getLogger("tickpipe").setLevel(logging.CRITICAL)
    names = args.names or list(BENCHES)
    started = time.monotonic()
    # The in-process clients (the ingestor, the bare client, the floor) run on the event loop
    # the stages use (uvloop), like the stage processes the other benchmarks start.
    install_event_loop()
    rows = asyncio.run(_run(names, args))
    print(f"machine: {machine()}")
    print(f"mode: {'quick' if args.quick else 'full'}; took {time.monotonic() - started:.0f} s\n")
    print(format_table(rows))
    return 1 if any(r.metric == "FAILED" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
