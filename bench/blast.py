"""Serve pre-encoded combined trade frames over WebSocket as fast as the client reads them.

``python -m bench.blast --count N --ready-file F`` listens on loopback (port 0 = a free port),
writes ``{"port": P}`` to ``F`` once listening, and sends every client that connects ``N`` trade
frames (those of its streams, below), written straight to the transport in chunks of whole
WebSocket frames and paced only by TCP flow control; then it keeps the connection open. With
``--drop-after K`` the first connection is aborted (no close handshake) after ``K`` frames and
the time is recorded; later connections get the frames normally. ``--events FILE`` logs
``drop`` and ``first_frame`` times (ns) as JSON lines. The server stops on SIGTERM/SIGINT or
after ``--max-seconds``.

A client whose request path names ``@aggTrade`` streams gets the same trades as aggregate-trade
frames (what cryptofeed subscribes to). ``--tls-cert``/``--tls-key`` serve ``wss://`` (the peer
benchmark's self-signed certificate); ``--hold`` holds every connection, once open (event
``connected``), until the server receives SIGUSR1, so a benchmark can start the clock on idle
clients (each SIGUSR1 releases the connections opened before it).

``--symbols A,B,...`` names the trades' symbols (round-robin, ``count`` trades in all), and each
connection gets the trades of the streams it asked for, as a venue sends them: those named in its
URL (``?streams=``), or, on a bare ``/stream`` held by ``--hold``, those of the ``SUBSCRIBE``
messages it sends while held (each answered, event ``subscribed``). ``--rate R`` paces the
trades at ``R`` per second over all the symbols instead of as fast as the client reads; each
connection then logs when it wrote each of its frames (event ``sent``: ``[index, ns]`` pairs, the
index counting the frames of all symbols from 0), so a benchmark can time every trade.
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
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, serve

from bench.frames import streams_symbols, trade_frames, ws_text_frame

__all__ = ["BlastServer", "main"]

CHUNK_FRAMES = 256
HIGH_WATER = 1 << 20


class BlastServer:
    """Send each connection the trades of its streams, pre-encoded; see the module docstring."""

    def __init__(
        self,
        count: int,
        *,
        symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
        drop_after: int | None = None,
        events: Path | None = None,
        hold: bool = False,
        rate: float = 0.0,
    ) -> None:
        # Every trade lies in the past when it is sent (1 ms per 100 frames), as a venue's do.
        self.start_ms = time.time_ns() // 1_000_000 - count // 100 - 1
        self.symbols = tuple(symbols)
        self.count = count
        self.frames = _encoded(trade_frames(self.symbols, count, start_ms=self.start_ms))
        self._agg_frames: list[bytes] | None = None
        self.drop_after_chunks = None if drop_after is None else max(1, drop_after // CHUNK_FRAMES)
        self.events = events
        self.hold = hold
        self.rate = rate
        self._go = asyncio.Event()
        self._conns = itertools.count(1)
        self.dropped = False

    @property
    def agg_frames(self) -> list[bytes]:
        """The same trades as aggregate-trade frames (encoded on first use)."""
        if self._agg_frames is None:
            frames = trade_frames(
                self.symbols, self.count, start_ms=self.start_ms, event="aggTrade"
            )
            self._agg_frames = _encoded(frames)
        return self._agg_frames

    def release(self) -> None:
        """Let the connections held so far start (``--hold``); later ones wait for the next."""
        self._go.set()
        self._go = asyncio.Event()

    def _event(self, ev: str, **fields: object) -> None:
        if self.events is not None:
            with self.events.open("ab") as f:
                f.write(orjson.dumps({"ev": ev, "ts": time.time_ns(), **fields}) + b"\n")

    def indices_for(self, wanted: set[str] | None) -> list[int]:
        """Return the indices of the frames of the ``wanted`` symbols (None: every frame)."""
        if wanted is None or wanted >= set(self.symbols):
            return list(range(self.count))
        width = len(self.symbols)
        mine = [n for n, symbol in enumerate(self.symbols) if symbol in wanted]
        return sorted(n + k for n in mine for k in range(0, self.count - n, width))

    async def _listen(self, ws: ServerConnection, number: int, wanted: set[str]) -> None:
        """Answer ``SUBSCRIBE`` messages, adding their symbols to ``wanted``."""
        with contextlib.suppress(Exception):
            async for message in ws:
                request = orjson.loads(message)
                if not isinstance(request, dict) or request.get("method") != "SUBSCRIBE":
                    continue
                wanted |= streams_symbols(request.get("params") or [])
                await ws.send(orjson.dumps({"result": None, "id": request.get("id")}).decode())
                self._event("subscribed", conn=number, symbols=len(wanted))

    async def handler(self, ws: ServerConnection) -> None:
        """Blast the frames at one client, then hold the connection until it closes."""
        number = next(self._conns)
        drop_at = None if self.dropped else self.drop_after_chunks
        path = ws.request.path if ws.request is not None else ""
        self._event("connected", conn=number, path=path)
        query = parse_qs(urlsplit(path).query).get("streams")
        wanted = streams_symbols(query[0].split("/")) if query else None
        listener = None
        if wanted is None and self.hold:  # a bare /stream: it subscribes by message
            wanted = set()
            listener = asyncio.create_task(self._listen(ws, number, wanted))
        try:
            if self.hold:
                await self._go.wait()
            every = self.agg_frames if "@aggTrade" in path else self.frames
            indices = self.indices_for(wanted)
            frames = [every[n] for n in indices]
            if self.rate > 0:
                await self._paced(ws, number, indices, frames)
            else:
                await self._blast(ws, number, frames, drop_at)
            with contextlib.suppress(Exception):
                await ws.wait_closed()
        finally:
            if listener is not None:
                listener.cancel()

    async def _blast(
        self, ws: ServerConnection, number: int, frames: list[bytes], drop_at: int | None
    ) -> None:
        transport = ws.transport
        chunks = [
            b"".join(frames[i : i + CHUNK_FRAMES]) for i in range(0, len(frames), CHUNK_FRAMES)
        ]
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
        self._event("sent_all", conn=number, frames=len(frames))

    async def _paced(
        self, ws: ServerConnection, number: int, indices: list[int], frames: list[bytes]
    ) -> None:
        """Write the frames at this connection's share of ``rate``; log each frame's time."""
        transport = ws.transport
        per_s = self.rate * len(frames) / max(1, self.count)
        sent: list[tuple[int, int]] = []
        started = time.monotonic_ns()
        self._event("first_frame", conn=number)
        pos = 0
        while pos < len(frames) and not transport.is_closing():
            due = min(len(frames), 1 + int(per_s * (time.monotonic_ns() - started) / 1e9))
            if due > pos:
                now = time.time_ns()
                transport.write(b"".join(frames[pos:due]))
                sent += [(n, now) for n in indices[pos:due]]
                pos = due
            await asyncio.sleep(0.001)
        self._event("sent_all", conn=number, sent=sent)


def _encoded(frames: list[str]) -> list[bytes]:
    return [ws_text_frame(f) for f in frames]


async def _serve(args: argparse.Namespace) -> None:
    blast = BlastServer(
        args.count,
        symbols=[part.strip().upper() for part in args.symbols.split(",") if part.strip()],
        rate=args.rate,
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
    parser.add_argument("--count", type=int, required=True, help="trades over all symbols")
    parser.add_argument(
        "--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols of the trades"
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="trades/s over all symbols (default 0: unpaced)"
    )
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
