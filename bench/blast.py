"""Serve pre-encoded combined trade frames over WebSocket as fast as the client reads them.

``python -m bench.blast --count N --ready-file F`` listens on loopback (port 0 = a free port),
writes ``{"port": P}`` to ``F`` once listening, and sends every client that connects (any path)
``N`` trade frames, written straight to the transport in chunks of whole WebSocket frames and
paced only by TCP flow control; then it keeps the connection open. With ``--drop-after K`` the
first connection is aborted (no close handshake) after ``K`` frames and the time is recorded;
later connections get the frames normally. ``--events FILE`` logs ``drop`` and ``first_frame``
times (ns) as JSON lines. The server stops on SIGTERM/SIGINT or after ``--max-seconds``.

A client whose request path names ``@aggTrade`` streams gets the same trades as aggregate-trade
frames (what cryptofeed subscribes to). ``--tls-cert``/``--tls-key`` serve ``wss://`` (the peer
benchmark's self-signed certificate); ``--hold`` holds every connection, once open (event
``connected``), until the server receives SIGUSR1, so a benchmark can start the clock on idle
clients (each SIGUSR1 releases the connections opened before it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from websockets.asyncio.server import ServerConnection, serve

from bench.frames import trade_frames, ws_text_frame

__all__ = ["BlastServer", "main"]

CHUNK_FRAMES = 256
HIGH_WATER = 1 << 20


class BlastServer:
    """Send each connection ``count`` pre-encoded frames; see the module docstring."""

    def __init__(
        self,
        count: int,
        *,
        symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
        drop_after: int | None = None,
        events: Path | None = None,
        hold: bool = False,
    ) -> None:
        # Every trade lies in the past when it is sent (1 ms per 100 frames), as a venue's do.
        start_ms = time.time_ns() // 1_000_000 - count // 100 - 1
        self.chunks = _chunks(trade_frames(symbols, count, start_ms=start_ms))
        self.agg_chunks = _chunks(trade_frames(symbols, count, start_ms=start_ms, event="aggTrade"))
        self.drop_after_chunks = None if drop_after is None else max(1, drop_after // CHUNK_FRAMES)
        self.events = events
        self.hold = hold
        self._go = asyncio.Event()
        self._conns = itertools.count(1)
        self.dropped = False

    def release(self) -> None:
        """Let the connections held so far start (``--hold``); later ones wait for the next."""
        self._go.set()
        self._go = asyncio.Event()

    def _event(self, ev: str, **fields: object) -> None:
        if self.events is not None:
            with self.events.open("ab") as f:
                f.write(orjson.dumps({"ev": ev, "ts": time.time_ns(), **fields}) + b"\n")

    async def handler(self, ws: ServerConnection) -> None:
        """Blast the frames at one client, then hold the connection until it closes."""
        number = next(self._conns)
        transport = ws.transport
        drop_at = None if self.dropped else self.drop_after_chunks
        path = ws.request.path if ws.request is not None else ""
        self._event("connected", conn=number, path=path)
        if self.hold:
            await self._go.wait()
        chunks = self.agg_chunks if "@aggTrade" in path else self.chunks
        for n, chunk in enumerate(chunks):
            if n == 0:
                self._event("first_frame", conn=number)
            if drop_at is not None and n == drop_at:
                self.dropped = True
                self._event("drop", conn=number)
                transport.abort()
                return
            transport.write(chunk)
            while transport.get_write_buffer_size() > HIGH_WATER:
                if transport.is_closing():
                    return
                await asyncio.sleep(0.0005)
            if n % 8 == 7:
                await asyncio.sleep(0)  # let the protocol answer pings
        self._event("sent_all", conn=number)
        with contextlib.suppress(Exception):
            await ws.wait_closed()


def _chunks(frames: list[str]) -> list[bytes]:
    encoded = [ws_text_frame(f) for f in frames]
    return [b"".join(encoded[i : i + CHUNK_FRAMES]) for i in range(0, len(encoded), CHUNK_FRAMES)]


async def _serve(args: argparse.Namespace) -> None:
    blast = BlastServer(
        args.count,
        drop_after=args.drop_after,
        events=Path(args.events) if args.events else None,
        hold=args.hold,
    )
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, blast.release)
    async with serve(
        blast.handler, "127.0.0.1", args.port, ping_interval=None, compression=None, ssl=tls
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ready = Path(args.ready_file)
        tmp = ready.with_name(ready.name + ".tmp")
        tmp.write_bytes(orjson.dumps({"port": port}))
        os.replace(tmp, ready)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.max_seconds):
                await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve until stopped; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.blast", description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="frames per connection")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--drop-after", type=int, default=None)
    parser.add_argument("--events", default=None)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--hold", action="store_true", help="hold connections until SIGUSR1")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate: serve wss://")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
