"""Measure the client-side CPU per frame of receiving trade frames, websockets against picows.

``python -m bench ws-client`` (or ``python -m bench.ws_client_cost [--frames N] [--reps R]``)
starts one blast server (``bench.blast``) over ``wss://`` (a loopback certificate from the mock's
CA, as the peer bench) and one over ``ws://``, then, in this process and on the stages' event
loop, receives ``N`` Binance trade frames from each with every client below, the clients
alternating within each repetition (rotating order), and prints per client and scheme the median
CPU microseconds per frame (``time.process_time`` from the first frame to the last, so the
handshake is left out and other jobs on the machine move it little), the range, and the ratio to
websockets. The clients hand every frame to the reader as a ``str``, as the ingestor reads it:

* ``websockets``: ``async for message in ws`` on a connection opened by
  :meth:`tickpipe.ingestor.slot.WsOptions.connect` with ``client="websockets"`` (the ingestor's
  options; its client before picows);
* ``picows``: picows' native listener feeding a small ``recv`` queue (``PicowsReader`` below,
  paused reading past ``WS_MAX_QUEUE`` frames), awaited once per frame: what a seam would cost;
* ``picows-compat``: the same with ``client="picows"``: picows' websockets-compatible client
  (``picows.websockets``), what the ingestor uses by default;
* ``picows-callback``: the native listener counting frames in its callback, no await per frame
  (a floor, not something the ingestor could use as it stands).

picows is optional: without it only websockets is measured and the table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from bench.rig import Rig, temp_dir
from bench.stats import Row
from tickpipe.common.stage import install_event_loop
from tickpipe.common.tls import client_context, trust_ca_file
from tickpipe.ingestor.slot import WS_MAX_QUEUE, WsOptions
from tickpipe.mock_ws.tls import generate

__all__ = ["CLIENTS", "Sample", "main", "run_ws_client", "summarize"]

#: Receives ``frames`` frames from ``url``; returns the CPU seconds from the first to the last.
Client = Callable[[str, int], Awaitable[float]]


@dataclass(frozen=True)
class Sample:
    """One run: a client, a scheme, and the CPU microseconds it spent per frame."""

    client: str
    scheme: str
    cpu_us_per_frame: float


def summarize(samples: Sequence[Sample], reference: str = "websockets") -> list[dict[str, Any]]:
    """Return per (scheme, client) the median, min and max CPU µs per frame and the ratio.

    The ratio is the client's median over ``reference``'s median on the same scheme (``nan``
    when the reference was not measured). Order: schemes as first seen, clients as first seen.
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        groups.setdefault((s.scheme, s.client), []).append(s.cpu_us_per_frame)
    medians = {key: statistics.median(values) for key, values in groups.items()}
    out = []
    for (scheme, client), values in groups.items():
        ref = medians.get((scheme, reference), float("nan"))
        median = medians[(scheme, client)]
        out.append(
            {
                "scheme": scheme,
                "client": client,
                "median": median,
                "min": min(values),
                "max": max(values),
                "n": len(values),
                "ratio": median / ref if ref > 0 else float("nan"),
                "saved": ref - median,
            }
        )
    return out


async def _websockets(url: str, frames: int) -> float:
    async with WsOptions(client="websockets").connect(url) as ws:
        return await _drain(ws, frames)


async def _drain(ws: Any, frames: int) -> float:
    """Read ``frames`` text frames with ``async for``; return the CPU after the first."""
    message = await ws.recv()
    assert isinstance(message, str)
    started = time.process_time()
    left = frames - 1
    async for _message in ws:
        left -= 1
        if not left:
            break
    return time.process_time() - started


async def _picows_compat(url: str, frames: int) -> float:
    async with WsOptions(client="picows").connect(url) as ws:
        return await _drain(ws, frames)


class PicowsReader:
    """A picows listener that queues text frames for ``recv`` and pauses reading when full."""

    def __init__(self) -> None:
        import picows

        self._text = picows.WSMsgType.TEXT
        self.messages: collections.deque[str] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.transport: Any = None
        self.paused = False

    def on_ws_connected(self, transport: Any) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type is self._text:
            self.messages.append(frame.get_payload_as_utf8_text())
            if len(self.messages) >= WS_MAX_QUEUE and not self.paused:
                self.paused = True
                transport.underlying_transport.pause_reading()
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_ws_disconnected(self, transport: Any) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("disconnected"))

    async def recv(self) -> str:
        messages = self.messages
        while not messages:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.paused and len(messages) <= WS_MAX_QUEUE // 4:
            self.paused = False
            self.transport.underlying_transport.resume_reading()
        return messages.popleft()


def _listener_class(base: type) -> type:
    return type("Listener", (PicowsReader, base), {})


async def _picows(url: str, frames: int) -> float:
    import picows

    transport, listener = await picows.ws_connect(
        _listener_class(picows.WSListener), url, ssl_context=ssl_for(url)
    )
    reader = cast(PicowsReader, listener)
    try:
        await reader.recv()
        started = time.process_time()
        for _ in range(frames - 1):
            await reader.recv()
        return time.process_time() - started
    finally:
        transport.disconnect()
        await transport.wait_disconnected()


async def _picows_callback(url: str, frames: int) -> float:
    import picows

    done = asyncio.get_running_loop().create_future()
    marks: list[float] = []

    class Counter(picows.WSListener):
        left = frames

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            frame.get_payload_as_utf8_text()
            if self.left == frames:
                marks.append(time.process_time())
            self.left -= 1
            if not self.left and not done.done():
                done.set_result(time.process_time())

    transport, _ = await picows.ws_connect(Counter, url, ssl_context=ssl_for(url))
    try:
        ended: float = await done
        return ended - marks[0]
    finally:
        transport.disconnect()
        await transport.wait_disconnected()


def ssl_for(url: str) -> Any:
    return client_context() if url.startswith("wss://") else None


CLIENTS: dict[str, Client] = {
    "websockets": _websockets,
    "picows": _picows,
    "picows-compat": _picows_compat,
    "picows-callback": _picows_callback,
}


def _available() -> list[str]:
    try:
        import picows  # noqa: F401
    except ImportError:
        return ["websockets"]
    return list(CLIENTS)


async def measure(frames: int, reps: int, clients: Sequence[str]) -> list[Sample]:
    """Run every client ``reps`` times on ``wss://`` and ``ws://``; return the samples."""
    samples: list[Sample] = []
    with temp_dir("tp-bench-wsclient-") as tmp:
        rig = Rig(tmp)
        tls = generate(tmp / "tls", [], datetime.datetime.now(datetime.UTC))
        trust_ca_file(str(tls.ca))
        try:
            base = ["-m", "bench.blast", "--count", str(frames)]
            tls_args = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
            wss = await rig.start_ready("blast-tls", [*base, *tls_args], "port")
            ws = await rig.start_ready("blast", base, "port")
            urls = {"wss": f"wss://localhost:{wss}/ws", "ws": f"ws://127.0.0.1:{ws}/ws"}
            for rep in range(reps):
                order = list(clients[rep % len(clients) :]) + list(clients[: rep % len(clients)])
                for scheme, url in urls.items():
                    for client in order:
                        cpu_s = await asyncio.wait_for(CLIENTS[client](url, frames), 300)
                        us = cpu_s * 1e6 / max(1, frames - 1)
                        samples.append(Sample(client, scheme, us))
                        print(
                            f"  rep {rep + 1} {scheme} {client}: {us:.2f} CPU-us/frame",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            trust_ca_file(None)
            await rig.close()
    return samples


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


async def run_ws_client(
    quick: bool, *, frames: int | None = None, reps: int | None = None
) -> list[Row]:
    """Measure each available client; return the table's rows."""
    frames = frames or (20_000 if quick else 100_000)
    reps = reps or (2 if quick else 5)
    clients = _available()
    load_before = _load()
    samples = await measure(frames, reps, clients)
    rows = []
    for s in summarize(samples):
        ratio = "" if s["client"] == "websockets" else f"x{s['ratio']:.2f} of websockets"
        saved = "" if s["client"] == "websockets" else f", saves {s['saved']:.2f} µs"
        rows.append(
            Row(
                "ws-client",
                f"{s['scheme']}:// {s['client']}, client CPU µs per frame",
                f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f}, n={s['n']}){saved}",
                ratio or f"{frames:,} frames per run, alternating",
            )
        )
    if len(clients) == 1:
        rows.append(Row("ws-client", "picows", "not installed", "pip install picows"))
    rows.append(Row("ws-client", "load average", f"before {load_before}, after {_load()}"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement on its own and print the rows."""
    parser = argparse.ArgumentParser(prog="python -m bench.ws_client_cost", description=__doc__)
    parser.add_argument("--frames", type=int, default=None, help="frames per run (100,000)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (5)")
    parser.add_argument("--quick", action="store_true", help="20,000 frames, 2 repetitions")
    args = parser.parse_args(argv)
    if any(n is not None and n < 2 for n in (args.frames, args.reps)):
        parser.error("--frames and --reps must be at least 2")
    install_event_loop()
    from bench.stats import format_table

    rows = asyncio.run(run_ws_client(args.quick, frames=args.frames, reps=args.reps))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
