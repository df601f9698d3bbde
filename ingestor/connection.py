"""Keep one venue connection slot alive and put every frame it receives on the write queue.

A slot runs one WebSocket session at a time, except while it rotates: before the venue's lifetime
limit (jittered) or on ``serverShutdown`` it opens and subscribes a second session, waits until
that one delivers, and only then closes the first (make-before-break). Both write into raw while
they overlap; downstream de-duplicates by trade id. A session whose every stream has gone quiet
far past its learned cadence (:mod:`ingestor.liveness`) is written as ``stale`` and replaced; one
whose single subscription went silent while the others flow gets a ``gap`` marker of kind
``silence`` naming the stream, and is rotated make-before-break.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from tickpipe.common.backoff import Backoff
from tickpipe.common.contract import MarkerEvent, RawKind
from tickpipe.common.errors import AuthError, RateLimited, VenueError
from tickpipe.common.links import ConnectionTape, Link, Reply, connection_id
from tickpipe.common.schema import RawFrame
from tickpipe.common.stopping import wait_stop
from tickpipe.common.units import MS
from tickpipe.common.venue_clock import DEFAULT_RECV_WINDOW_MS, ClockSample, VenueClock
from tickpipe.ingestor.liveness import Cadence, stream_of
from tickpipe.ingestor.outbox import StreamRequests, send_paced
from tickpipe.ingestor.slot import (
    MAX_FRAME_BYTES,
    Attempt,
    Run,
    StaleConnection,
    WsOptions,
    is_shutdown,
    session_outcome,
)
from tickpipe.ingestor.writer import IngestorStats, WriteQueue
from tickpipe.ingestor.wsclient import ConnectionClosed, WsConnection
from tickpipe.venues.registry import CombinedStreams

if TYPE_CHECKING:
    from tickpipe.venues.registry import ServerTime

__all__ = ["MAX_FRAME_BYTES", "Connection", "Ended", "StaleConnection", "WsOptions"]

log = logging.getLogger("tickpipe.ingestor")

#: Timed server-time requests before a private slot signs its subscription.
CLOCK_SAMPLES = 4
#: How long one server-time answer may take before the slot signs with what it knows.
CLOCK_ANSWER_TIMEOUT_S = 5.0
#: What ends the clock sampling early: a missing answer or a closed connection.
CLOCK_SAMPLING_ENDS: tuple[type[Exception], ...] = (TimeoutError, *ConnectionClosed)


@dataclass(slots=True)
class Ended:
    """Why a session's connection ended (``cancelled`` until known)."""

    reason: str = "cancelled"


class Connection:
    """One connection slot: connect, read, rotate, back off, reconnect, until halted.

    Every frame is stamped by a :class:`ConnectionTape` and put on the shared bounded queue; a
    full queue makes the reader await (back-pressure on the socket), counted in
    ``queue_full_waits``. Connect, disconnect, stale and rotate markers go through the same
    queue, so they stay in order with the frames. A rejected key raises :class:`ConfigError`.
    """

    def __init__(
        self,
        link: Link,
        *,
        venue: str,
        queue: WriteQueue,
        stats: IngestorStats,
        clock: Callable[[], int],
        halt: asyncio.Event,
        token: str,
        backoff: Backoff,
        options: WsOptions,
        user_data_request: Callable[[int, int], str] | None = None,
        rng: random.Random | None = None,
        streams: list[str] | None = None,
        ws_base: str = "",
        on_refused: Callable[[str, str], None] | None = None,
        on_frame: Callable[[Connection, str, str | bytes], None] | None = None,
        on_delivered: Callable[[Connection], None] | None = None,
        protocol: CombinedStreams | None = None,
        server_time: ServerTime | None = None,
        venue_clock: VenueClock | None = None,
    ) -> None:
        self.link = link
        #: The venue's combined-stream protocol (``None``: a subclass runs the sessions).
        self.protocol = protocol
        self.venue = venue
        self.queue = queue
        self.stats = stats
        self.clock = clock
        self.halt = halt
        self.token = token
        self.backoff = backoff
        self.options = options
        self.user_data_request = user_data_request
        self.rng = rng or random.Random()
        self._request_ids = itertools.count(1)
        self._numbers = itertools.count(1)
        #: The streams this slot carries (market slots) and their control messages.
        self.requests = None
        if streams is not None and protocol is not None:
            self.requests = StreamRequests(
                streams,
                ws_base,
                max_url_chars=protocol.max_url_chars,
                subscribe_chunk=protocol.subscribe_chunk,
            )
        self.on_refused = on_refused
        self.on_frame = on_frame
        self.on_delivered = on_delivered
        #: A private slot asks the venue's time first and stamps its signed subscription with it.
        self.server_time = server_time
        self.venue_clock = venue_clock if venue_clock is not None else VenueClock()
        self._clock_state = "unknown"
        #: Symbols (upper case) whose every stream went quiet while others flow (a halt).
        self.quiet_symbols: set[str] = set()

    @property
    def streams(self) -> list[str] | None:
        """Return the streams of a market slot (``None`` for the private one)."""
        return None if self.requests is None else self.requests.streams

    def change(self, method: str, streams: list[str]) -> None:
        """Subscribe or unsubscribe ``streams`` now on every live session, and on future ones."""
        assert self.requests is not None
        self.requests.change(method, streams)

    async def keep_connected(self) -> None:
        """Run until halted; log one line per failed attempt (warning first, then info)."""
        streak = 0
        current: Run | None = None
        halted = asyncio.create_task(self.halt.wait())
        try:
            while not self.halt.is_set():
                if current is None:
                    current = self._start()
                assert current.task is not None
                rotate = asyncio.create_task(current.rotate.wait())
                await asyncio.wait(
                    {current.task, rotate, halted}, return_when=asyncio.FIRST_COMPLETED
                )
                rotate.cancel()
                if self.halt.is_set():
                    break
                if not current.task.done():
                    current = await self._rotate(current)
                    continue
                reason, uptime_s = self._outcome(current)
                current = None
                if uptime_s is not None:
                    streak = 0
                    self.backoff.connection_ended(uptime_s)
                streak += 1
                delay = self.backoff.next_delay_s()
                self.stats.last_error = f"{self.link.label}: {reason}"
                log.log(
                    logging.WARNING if streak == 1 else logging.INFO,
                    "connection %s lost or refused: %s; reconnecting in %.2f s",
                    self.link.label,
                    reason,
                    delay,
                    extra={"url": self.link.url, "failures_in_row": streak},
                )
                await wait_stop(self.halt, delay)
        finally:
            halted.cancel()
            if current is not None and current.task is not None:
                await asyncio.wait([current.task])

    def _start(self) -> Run:
        number = next(self._numbers)
        if number > 1:
            self.stats.reconnects += 1
        run = Run(Attempt(connection_id(self.link.label, self.token, number)))
        run.task = asyncio.create_task(self._session(run), name=f"conn-{run.attempt.conn}")
        return run

    def _outcome(self, run: Run) -> tuple[str, float | None]:
        """Return why a finished session ended and how long it was up; raise if fatal."""
        return session_outcome(run, self.link.url, self.backoff)

    async def _rotate(self, old: Run) -> Run | None:
        """Open a new session, wait until it delivers, then retire ``old`` (make-before-break)."""
        new = self._start()
        assert new.task is not None and old.task is not None
        log.info(
            "rotating connection %s: %s",
            self.link.label,
            old.rotate_reason,
            extra={"conn": old.attempt.conn, "to": new.attempt.conn},
        )
        delivered = asyncio.create_task(new.delivered.wait())
        halted = asyncio.create_task(self.halt.wait())
        await asyncio.wait(
            {delivered, new.task, halted},
            timeout=self.options.rotate_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        delivered.cancel()
        halted.cancel()
        if new.delivered.is_set():
            marker = {
                "event": MarkerEvent.ROTATE,
                "from": old.attempt.conn,
                "to": new.attempt.conn,
                "reason": old.rotate_reason,
            }
            await self._put(self._marker(old.attempt.conn, marker))
            old.retire.set()
            await asyncio.wait([old.task])
            if not old.task.cancelled() and old.task.exception() is not None:
                self._outcome(old)  # raises only if fatal
            self.stats.rotations += 1
            return new
        # The new session did not deliver: keep the old one and try again later.
        new.retire.set()
        await asyncio.wait([new.task])
        if self.halt.is_set():
            return old
        reason, _ = self._outcome(new)
        self.stats.last_error = f"{self.link.label}: rotation failed: {reason}"
        log.warning("rotation of %s failed: %s", self.link.label, reason)
        if old.task.done():
            return None
        old.rotate.clear()
        delay = self.backoff.next_delay_s()
        asyncio.get_running_loop().call_later(delay, old.rotate.set)
        return old

    # -- one session ---------------------------------------------------------------------------
    async def _session(self, run: Run) -> None:
        link, opts, attempt = self.link, self.options, run.attempt
        url, messages = link.url, list(link.messages)
        if self.requests is not None:
            url, messages = self.requests.plan()
        async with opts.connect(url) as ws:
            attempt.connected_at = time.monotonic()
            tape = ConnectionTape(attempt.conn, self.venue, link.channel, url)
            await self._put(tape.connect_marker(self.clock()))
            self.stats.connections_up += 1
            if link.private and self.user_data_request is not None:
                attempt.request_id = next(self._request_ids)
                if self.server_time is not None:
                    await self._sample_clock(ws, tape)
                stamp_ms = self.venue_clock.corrected(self.clock()) // MS
                messages = [self.user_data_request(attempt.request_id, stamp_ms)]
            lifetime = opts.lifetime_s * (1.0 - 0.05 * self.rng.random())
            timer = asyncio.get_running_loop().call_later(
                lifetime, self._want_rotation, run, f"lifetime {lifetime:.0f} s reached"
            )
            requests = self.requests or StreamRequests([], "")
            outbox = requests.open_outbox(messages)
            helpers = [
                asyncio.create_task(self._close_when_retired(ws, run)),
                asyncio.create_task(send_paced(ws, outbox)),
            ]
            cadence = Cadence(
                time.monotonic_ns(),
                max_silence_ns=int(opts.stale_max_s * 1e9),
                factor=opts.stale_factor,
                floor_ns=int(opts.stale_floor_s * 1e9),
            )
            if not link.private:
                helpers.append(asyncio.create_task(self._watch(ws, tape, run, cadence)))
            ended = Ended()
            try:
                await self._read_to_end(ws, run, self._read(ws, tape, run, cadence), ended)
            finally:
                reason = ended.reason
                self.quiet_symbols = set()
                timer.cancel()
                requests.close_outbox(outbox)
                for helper in helpers:
                    helper.cancel()
                self.stats.connections_up -= 1
                if link.private:
                    self.stats.private_subscribed = False
                marker = tape.disconnect_marker(self.clock(), reason)
                if reason == "cancelled":
                    with contextlib.suppress(asyncio.QueueFull):
                        self.queue.put_nowait((link.stream, marker))
                else:
                    await self._put(marker)

    async def _sample_clock(self, ws: WsConnection, tape: ConnectionTape) -> None:
        """Time :data:`CLOCK_SAMPLES` server-time requests into :attr:`venue_clock`.

        Runs before the read loop; every message received meanwhile (the answers too) is
        written to raw as usual. A missing answer or a closed connection ends the sampling: the
        subscription is then signed with what is known (a closed connection ends the session
        the usual way as soon as the read loop meets it).
        """
        try:
            for n in range(CLOCK_SAMPLES):
                if self.halt.is_set():
                    return
                await self._clock_sample(ws, tape, f"clock-{tape.conn}-{n}")
        except CLOCK_SAMPLING_ENDS as exc:
            log.warning(
                "the venue did not tell its time: %s",
                type(exc).__name__,
                extra={"conn": tape.conn},
            )
            return
        self._judge_clock(tape.conn)

    async def _clock_sample(self, ws: WsConnection, tape: ConnectionTape, request_id: str) -> None:
        """Send one server-time request and wait for its answer, recording what arrives."""
        assert self.server_time is not None
        sent_ns = self.clock()
        await ws.send(self.server_time.request(request_id))
        while True:
            message = await asyncio.wait_for(ws.recv(), CLOCK_ANSWER_TIMEOUT_S)
            received_ns = self.clock()
            self.stats.frames_received += 1
            await self.queue.put((self.link.stream, tape.frame(message, received_ns)))
            venue_ms = self.server_time.answer(message, request_id)
            if venue_ms is not None:
                self.venue_clock.add(ClockSample(sent_ns, venue_ms, received_ns))
                return

    def _judge_clock(self, conn: str) -> None:
        """Log the venue clock offset when its state changes (a warning near or past limits)."""
        state = self.venue_clock.state(DEFAULT_RECV_WINDOW_MS)
        if state == self._clock_state:
            return
        self._clock_state = state
        warning = self.venue_clock.warning(DEFAULT_RECV_WINDOW_MS)
        extra = {"conn": conn, **self.venue_clock.figures(DEFAULT_RECV_WINDOW_MS)}
        if warning is None:
            log.info("venue clock offset %+.1f ms", self.venue_clock.offset_ns / MS, extra=extra)
        else:
            self.stats.last_error = f"{self.link.label}: {warning}"
            log.warning(warning, extra=extra)

    async def _read_to_end(
        self, ws: WsConnection, run: Run, reading: Awaitable[None], ended: Ended
    ) -> None:
        """Await ``reading`` (a session's read loop) and record in ``ended`` why it stopped.

        A stale connection (closed by the liveness watch) raises :class:`StaleConnection`;
        other errors propagate. ``ended.reason`` stays ``cancelled`` when the task is cancelled.
        """
        try:
            await reading
            if run.stale_reason:
                raise StaleConnection(run.stale_reason)
            who = "us" if self.halt.is_set() or run.retire.is_set() else "the venue"
            ended.reason = f"closed by {who}: code {ws.close_code} {ws.close_reason}".rstrip()
        except ConnectionClosed as exc:
            if run.stale_reason:
                ended.reason = run.stale_reason
                raise StaleConnection(run.stale_reason) from None
            ended.reason = f"connection lost: {exc}"
            sent = exc.sent
            if sent is not None and sent.code == 1009 and not exc.rcvd_then_sent:  # we refused
                await self._oversized(run, sent.reason)
            raise
        except Exception as exc:
            ended.reason = f"{type(exc).__name__}: {exc}"
            raise

    async def _oversized(self, run: Run, why: str) -> None:
        """Record a message over the size limit: the connection closed itself with 1009.

        Its content is never read, so which stream it belonged to is known only when the
        connection carries one. Trades it held are backfilled once the reconnected session
        shows the hole in the trade ids.
        """
        streams = list(self.streams or ())
        self.stats.oversized_frames += 1
        self.stats.last_error = f"{self.link.label}: message over {self.options.max_frame_bytes} B"
        log.warning(
            "connection %s received a message over its %d-byte limit and closed (1009): %s",
            self.link.label,
            self.options.max_frame_bytes,
            why,
            extra={"conn": run.attempt.conn, "streams": len(streams)},
        )
        event = {
            "event": MarkerEvent.OVERSIZED_FRAME,
            "conn": run.attempt.conn,
            "limit_bytes": self.options.max_frame_bytes,
            "channel": self.link.channel,
            "stream": streams[0] if len(streams) == 1 else None,
            "streams": streams,
            "reason": f"close code 1009: {why}",
        }
        await self._put(self._marker(run.attempt.conn, event))

    def _want_rotation(self, run: Run, reason: str) -> None:
        if not run.rotate.is_set():
            run.rotate_reason = reason
            run.rotate.set()

    async def _close_when_retired(self, ws: WsConnection, run: Run) -> None:
        halted = asyncio.create_task(self.halt.wait())
        retired = asyncio.create_task(run.retire.wait())
        try:
            await asyncio.wait({halted, retired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
            retired.cancel()
        await ws.close()

    async def _watch(
        self, ws: WsConnection, tape: ConnectionTape, run: Run, cadence: Cadence
    ) -> None:
        """Check liveness a few times per floor period; close a stale connection with 1011."""
        interval = max(0.05, min(1.0, self.options.stale_floor_s / 4))
        while True:
            await asyncio.sleep(interval)
            now_ns = time.monotonic_ns()
            why = cadence.stale(now_ns)
            if why is None:
                self._note_quiet(cadence.quiet_symbols(now_ns), tape)
                if not run.rotate.is_set():
                    await self._check_subscriptions(tape, run, cadence, now_ns)
                continue
            self.stats.stale_detected += 1
            run.stale_reason = f"stale: {why}"
            log.warning(
                "connection %s is stale (%s); replacing it",
                self.link.label,
                why,
                extra={"conn": tape.conn, "streams": len(cadence.streams)},
            )
            event = {
                "event": MarkerEvent.STALE,
                "conn": tape.conn,
                "reason": why,
                "frames": tape.seq,
            }
            await self._put(self._marker(tape.conn, event, tape.seq))
            await ws.close(1011, f"stale: {why}"[:120])
            return

    def _note_quiet(self, symbols: list[str], tape: ConnectionTape) -> None:
        """Log each symbol that goes quiet (every stream of it) or flows again."""
        now = {s.upper() for s in symbols}
        for symbol in sorted(now - self.quiet_symbols):
            self.stats.symbols_quiet += 1
            log.warning(
                "%s is quiet: its trade and book streams stopped while other symbols flow "
                "(a halt?); its data is stale until they resume",
                symbol,
                extra={"conn": tape.conn, "symbol": symbol},
            )
        for symbol in sorted(self.quiet_symbols - now):
            log.info("%s flows again", symbol, extra={"conn": tape.conn, "symbol": symbol})
        self.quiet_symbols = now

    async def _check_subscriptions(
        self, tape: ConnectionTape, run: Run, cadence: Cadence, now_ns: int
    ) -> None:
        """Record each subscription silent while its siblings flow, then rotate the connection.

        A ``gap`` marker of kind ``silence`` names the stream (the trades it missed are
        backfilled once the new session shows the hole in the ids). Rotation is
        make-before-break, so the streams that still flow lose nothing.
        """
        silent = cadence.silent_streams(now_ns)
        if not silent:
            return
        for name, silent_ns in silent:
            self.stats.streams_silent += 1
            log.warning(
                "stream %s on connection %s is silent for %.1f s while the others flow; "
                "rotating the connection",
                name,
                self.link.label,
                silent_ns / 1e9,
                extra={"conn": tape.conn, "stream": name},
            )
            event = {
                "event": MarkerEvent.GAP,
                "kind": "silence",
                "stream": name,
                "conn": tape.conn,
                "silent_s": round(silent_ns / 1e9, 3),
                "reason": "subscription silent while its connection flows",
            }
            await self._put(self._marker(tape.conn, event, tape.seq))
        self.stats.last_error = f"{self.link.label}: stream {silent[0][0]} silent"
        names = ", ".join(name for name, _ in silent)
        self._want_rotation(run, f"silent stream {names}")

    async def _read(
        self, ws: WsConnection, tape: ConnectionTape, run: Run, cadence: Cadence
    ) -> None:
        queue, stats, clock, stream = self.queue, self.stats, self.clock, self.link.stream
        async for message in ws:
            ts_recv = clock()
            item = (stream, tape.frame(message, ts_recv))
            stats.frames_received += 1
            if queue.full():
                stats.queue_full_waits += 1
                await queue.put(item)
            else:
                queue.put_nowait(item)
            name = stream_of(message)
            cadence.seen(name, time.monotonic_ns())
            if name is not None and not name.startswith("!"):
                if not run.delivered.is_set():
                    run.delivered.set()
                    if self.on_delivered is not None:
                        self.on_delivered(self)
                if self.on_frame is not None:
                    self.on_frame(self, name, message)
                continue
            if is_shutdown(message):
                self._want_rotation(run, "serverShutdown")
                continue
            protocol = self.protocol
            if protocol is not None and not protocol.is_data_frame(message):
                reply = protocol.classify_reply(message, now_ms=ts_recv // MS)
                if reply is not None:
                    self._on_reply(run, reply)
            elif self.link.private and not run.delivered.is_set():
                run.delivered.set()

    def _on_reply(self, run: Run, reply: Reply) -> None:
        link, attempt = self.link, run.attempt
        if self.requests is not None and self.requests.owns(reply):
            refused = self.requests.answer(reply)
            if refused is not None:
                self._refused(*refused)
            return
        ours = link.private and (reply.id == attempt.request_id or reply.id is None)
        if reply.error is None:
            if ours and isinstance(reply.result, dict) and "subscriptionId" in reply.result:
                self.stats.private_subscribed = True
                run.delivered.set()
                log.info("user-data stream subscribed", extra={"conn": attempt.conn})
            return
        if isinstance(reply.error, AuthError | RateLimited) or ours:
            if link.private:
                self.stats.private_subscribed = False
            raise reply.error
        self.stats.last_error = f"{link.label}: {reply.error}"
        log.error("venue refused a request: %s", reply.error, extra={"conn": attempt.conn})

    def _refused(self, method: str, stream: str, error: VenueError) -> None:
        log.error(
            "the venue refused %s %s: %s (the other streams carry on)",
            method,
            stream,
            error,
            extra={"stream": stream},
        )
        self.stats.subscriptions_refused += 1
        self.stats.last_error = f"{self.link.label}: {method} {stream} refused: {error}"
        if self.on_refused is not None:
            self.on_refused(method, stream)
        event = {"event": MarkerEvent.SUBSCRIPTION_REFUSED, "method": method, "stream": stream}
        marker = self._marker("", {**event, "error": str(error)})
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((self.link.stream, marker))

    def _marker(self, conn: str, event: Mapping[str, object], seq: int = 0) -> RawFrame:
        data = orjson.dumps(event).decode()
        return RawFrame(
            RawKind.MARKER, self.venue, conn, seq, self.clock(), data, self.link.channel
        )

    async def _put(self, frame: RawFrame) -> None:
        if self.queue.full():
            self.stats.queue_full_waits += 1
        await self.queue.put((self.link.stream, frame))
