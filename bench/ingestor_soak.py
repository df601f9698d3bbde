"""Soak the ingestor for ten minutes against the mock exchange and print its memory over time.

Run ``python bench/ingestor_soak.py [--minutes 10] [--rate 200] [--symbols 8]``. The mock
serves ``--rate`` trades per second per symbol (trade, bookTicker and depth streams) from its own
process, so its trade history does not count; raw entries go to an in-memory Redis (fakeredis)
trimmed as it goes, so what grows is the ingestor's own memory. Every ``--every`` seconds a line
shows the frames received and the process RSS; the last line gives RSS growth after warm-up as a
ratio (1.00 = flat). A rotation (short connection lifetime) and a dropped connection happen
mid-run on purpose. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import fakeredis  # noqa: E402

from tickpipe.common.settings import Settings  # noqa: E402
from tickpipe.ingestor.shell import Ingestor  # noqa: E402


def drop_connections(base: str) -> None:
    """Ask the mock to drop every market connection (``POST /_mock/faults``)."""
    body = json.dumps({"type": "drop", "kind": "stream"}).encode()
    request = urllib.request.Request(f"http://{base}/_mock/faults", data=body, method="POST")
    urllib.request.urlopen(request, timeout=5).close()


def rss_mb() -> float:
    """Return this process's resident set size in MB (from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(
    mock: subprocess.Popen[bytes],
    base: str,
    symbols: tuple[str, ...],
    minutes: float,
    every_s: float,
) -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    settings = Settings(
        namespace="soak",
        symbols=symbols,
        binance_ws_url=f"ws://{base}",
        binance_ws_api_url=f"ws://{base}/ws-api/v3",
        binance_rest_url=f"http://{base}",
        instance="soak",
        ingestor_journal_max_mb=0,
        binance_conn_lifetime_s=max(60.0, minutes * 60 / 3),
    )
    ingestor = Ingestor(settings, redis=redis)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    started = time.monotonic()
    end = started + minutes * 60
    warm: float | None = None
    dropped = False
    print(f"{'elapsed_s':>9} {'frames':>10} {'frames/s':>9} {'rss_mb':>8} rotations reconnects")
    last_frames, last_t = 0, started
    try:
        while time.monotonic() < end:
            await asyncio.sleep(every_s)
            for key in await redis.keys("soak:*raw"):
                await redis.xtrim(key, maxlen=1000, approximate=False)
            now = time.monotonic()
            s = ingestor.stats
            rate_now = (s.frames_received - last_frames) / (now - last_t)
            last_frames, last_t = s.frames_received, now
            rss = rss_mb()
            if warm is None and now - started >= min(60.0, minutes * 60 / 5):
                warm = rss
            print(
                f"{now - started:9.0f} {s.frames_received:10d} {rate_now:9.0f} {rss:8.1f} "
                f"{s.rotations:9d} {s.reconnects:10d}",
                flush=True,
            )
            if not dropped and now - started > minutes * 30:
                await asyncio.to_thread(drop_connections, base)
                dropped = True
    finally:
        stop.set()
        await task
        mock.terminate()
        mock.wait(10)
    final = rss_mb()
    if warm:
        print(f"rss after warm-up {warm:.1f} MB, at end {final:.1f} MB, ratio {final / warm:.2f}")


def start_mock(symbols: tuple[str, ...], rate: float) -> tuple[subprocess.Popen[bytes], str]:
    """Start the mock exchange as its own process; return it and its ``host:port``."""
    ready = Path(tempfile.mkdtemp()) / "ready.json"
    mock = subprocess.Popen(
        [sys.executable, "-m", "tickpipe.mock_ws", "--binance-port", "0",
         "--ready-file", str(ready),
         "--symbols", ",".join(symbols), "--rate", str(rate)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not ready.exists():
        if mock.poll() is not None:
            raise SystemExit("the mock exchange did not start")
        time.sleep(0.1)
    time.sleep(0.1)
    port = json.loads(ready.read_text())["binance_port"]
    base = f"127.0.0.1:{port}"
    return mock, base


def main() -> None:
    """Parse the options and run the soak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="trades/s per symbol")
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between lines")
    args = parser.parse_args()
    symbols = tuple(f"SYM{n}USDT" for n in range(args.symbols))
    mock, base = start_mock(symbols, args.rate)
    asyncio.run(soak(mock, base, symbols, args.minutes, args.every))


if __name__ == "__main__":
    main()
