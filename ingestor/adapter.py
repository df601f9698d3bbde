"""Run connection slots whose wire protocol a venue adapter supplies (Alpaca and later venues).

:class:`~ingestor.connection.Connection` speaks Binance. :class:`AdapterConnection` keeps its
reconnect loop, backoff, outcome rules (a rejected key is fatal, a rate limit waits), markers and
the shared write queue, and replaces the one session with a loop driven by a
:class:`VenueAdapter`: the adapter names the URL and upgrade headers and, per session, a
:class:`SessionAdapter` that turns each received frame into a :class:`Step` (raw entries to queue,
messages to send, the liveness key, delivered, an error that ends the session) and keeps the
:class:`~common.links.StreamTapes` the slot's connect and disconnect markers come from. The
venue's package builds the adapters (``ingest_adapters`` of :func:`venues.registry.venue`);
:func:`adapter_slots` binds one slot to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any, Protocol

from tickpipe.common.links import ConnectionTape, Link, Step, StreamTapes
from tickpipe.ingestor.connection import Connection, Ended
from tickpipe.ingestor.liveness import Cadence
from tickpipe.ingestor.slot import Run
from tickpipe.ingestor.writer import Item
from tickpipe.ingestor.wsclient import ConnectionClosed, WsConnection

__all__ = ["AdapterConnection", "SessionAdapter", "Step", "VenueAdapter", "adapter_slots"]


class SessionAdapter(Protocol):
    """One WebSocket session of an adapter-driven slot."""

    #: The tapes of every stream the session writes (connect and disconnect markers go to each).
    tapes: StreamTapes

    @property
    def tape(self) -> ConnectionTape:
        """Return the tape of the slot's own stream (markers of stale/rotate go there)."""

    def opening(self) -> list[str | bytes]: ...

    def receive(self, message: str | bytes, ts_recv: int) -> Step: ...


class VenueAdapter(Protocol):
    """One slot's venue protocol: where to connect and how to run a session.

    An adapter may also define ``async def prepare(self) -> None``, awaited before each
    connection attempt (IBKR: keep the gateway session alive, look contracts up); what it
    raises ends the attempt as a failed session would.
    """

    url: str
    #: Watch the learned cadence of data and replace a mute session.
    watch_liveness: bool
    #: Total silence that makes a session stale (``None``: the slot's ``stale_max_s``).
    max_silence_s: float | None
    #: Check the ``wss://`` certificate (off only for a local, self-signed gateway).
    verify_tls: bool

    def headers(self) -> dict[str, str]: ...

    def new_session(self, conn: str) -> SessionAdapter: ...

    def outboxes(self) -> set[asyncio.Queue[str | bytes]]: ...


class AdapterConnection(Connection):
    """A :class:`Connection` whose sessions follow a :class:`VenueAdapter`; never rotates."""

    adapter: VenueAdapter

    def bind(self, adapter: VenueAdapter) -> AdapterConnection:
        """Attach the adapter (call once, before :meth:`keep_connected`)."""
        self.adapter = adapter
        return self

    async def _session(self, run: Run) -> None:
        adapter, opts, attempt = self.adapter, self.options, run.attempt
        prepare = getattr(adapter, "prepare", None)
        if prepare is not None:
            await prepare()
        session = adapter.new_session(attempt.conn)
        async with opts.connect(adapter.url, adapter.headers(), adapter.verify_tls) as ws:
            attempt.connected_at = time.monotonic()
            for item in session.tapes.connect_markers(self.clock()):
                await self._put_item(item)
            self.stats.connections_up += 1
            outbox: asyncio.Queue[str | bytes] = asyncio.Queue()
            for message in session.opening():
                outbox.put_nowait(message)
            adapter.outboxes().add(outbox)
            helpers = [
                asyncio.create_task(self._close_when_retired(ws, run)),
                asyncio.create_task(_send_all(ws, outbox)),
            ]
            cadence = Cadence(
                time.monotonic_ns(),
                max_silence_ns=int((adapter.max_silence_s or opts.stale_max_s) * 1e9),
                factor=opts.stale_factor,
                floor_ns=int(opts.stale_floor_s * 1e9),
            )
            if adapter.watch_liveness:
                helpers.append(asyncio.create_task(self._watch(ws, session.tape, run, cadence)))
            ended = Ended()
            try:
                reading = self._read_steps(ws, session, run, cadence, outbox)
                await self._read_to_end(ws, run, reading, ended)
            finally:
                reason = ended.reason
                adapter.outboxes().discard(outbox)
                for helper in helpers:
                    helper.cancel()
                self.stats.connections_up -= 1
                if self.link.private:
                    self.stats.private_subscribed = False
                for item in session.tapes.disconnect_markers(self.clock(), reason):
                    if reason == "cancelled":
                        with contextlib.suppress(asyncio.QueueFull):
                            self.queue.put_nowait(item)
                    else:
                        await self._put_item(item)

    async def _read_steps(
        self,
        ws: WsConnection,
        session: SessionAdapter,
        run: Run,
        cadence: Cadence,
        outbox: asyncio.Queue[str | bytes],
    ) -> None:
        stats = self.stats
        async for message in ws:
            stats.frames_received += 1
            step = session.receive(message, self.clock())
            for item in step.items:
                await self._put_item(item)
            cadence.seen(step.stream, time.monotonic_ns())
            for out in step.send:
                outbox.put_nowait(out)
            for event in step.markers:
                await self._put(self._marker(session.tape.conn, event, session.tape.seq))
            if step.delivered and not run.delivered.is_set():
                run.delivered.set()
                if self.link.private:
                    stats.private_subscribed = True
            if step.error is not None:
                raise step.error

    async def _put_item(self, item: Item) -> None:
        if self.queue.full():
            self.stats.queue_full_waits += 1
        await self.queue.put(item)


async def _send_all(ws: WsConnection, outbox: asyncio.Queue[str | bytes]) -> None:
    while True:
        message = await outbox.get()
        with contextlib.suppress(*ConnectionClosed):
            await ws.send(message)


def adapter_slots(
    links: Sequence[Link], adapters: Sequence[VenueAdapter], **kwargs: Any
) -> list[Connection]:
    """Build one slot per link, driven by its adapter (``kwargs`` as for :class:`Connection`,
    but a fresh backoff per slot from ``backoff_factory``)."""
    make_backoff = kwargs.pop("backoff_factory")
    return [
        AdapterConnection(link, backoff=make_backoff(), **kwargs).bind(adapter)
        for link, adapter in zip(links, adapters, strict=True)
    ]
