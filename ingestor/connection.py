"""Keep one venue WebSocket connection alive and put every frame it receives on the write queue."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from common.backoff import Backoff
from common.binance import MS
from common.errors import AuthError, ConfigError, RateLimited, VenueError
from common.schema import RawFrame
from ingestor.session import (
    ConnectionTape,
    Link,
    Reply,
    classify_reply,
    connection_id,
    is_data_frame,
    retry_after_from_header,
)
from ingestor.writer import IngestorStats, WriteQueue

__all__ = ["MAX_FRAME_BYTES", "Connection", "WsOptions"]

log = logging.getLogger("tickpipe.ingestor")

#: Largest WebSocket message accepted; Binance frames are far smaller.
MAX_FRAME_BYTES = 4 * 1024 * 1024
#: Messages websockets buffers per connection before it stops reading the socket.
_WS_MAX_QUEUE = 256
#: Spacing of our own control messages (Binance allows 5 incoming messages/s, pings included).
_SEND_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class WsOptions:
    """Keepalive and size limits of every connection."""

    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 2.0


@dataclass(slots=True)
class _Attempt:
    conn: str
    connected_at: float | None = None
    request_id: int | None = None


class Connection:
    """One connection slot: connect, read until it ends, back off, reconnect, until halted.

    Every frame is stamped by a :class:`ConnectionTape` and put on the shared bounded queue; a
    full queue makes the reader await (back-pressure on the socket), counted in
    ``queue_full_waits``. Connect and disconnect markers go through the same queue, so they stay
    in order with the frames. A rejected key raises :class:`ConfigError`; nothing else ends it.
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
    ) -> None:
        self.link = link
        self.venue = venue
        self.queue = queue
        self.stats = stats
        self.clock = clock
        self.halt = halt
        self.token = token
        self.backoff = backoff
        self.options = options
        self.user_data_request = user_data_request
        self._request_ids = itertools.count(1)

    async def keep_connected(self) -> None:
        """Run until halted; log one line per failed attempt (warning first, then info)."""
        link, backoff, streak = self.link, self.backoff, 0
        for number in itertools.count(1):
            if self.halt.is_set():
                return
            if number > 1:
                self.stats.reconnects += 1
            attempt = _Attempt(connection_id(link.label, self.token, number))
            reason = "closed by the venue"
            try:
                await self._session(attempt)
            except AuthError as exc:
                raise ConfigError(str(exc)) from None
            except InvalidURI as exc:
                raise ConfigError(f"{link.url} is not a WebSocket URL: {exc}") from None
            except RateLimited as exc:
                backoff.wait_at_least(exc.retry_after_s)
                reason = str(exc)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (418, 429):
                    header = exc.response.headers.get("Retry-After")
                    backoff.wait_at_least(retry_after_from_header(header) or 0.0)
                reason = f"handshake refused with HTTP {status}"
            except (OSError, TimeoutError, WebSocketException, VenueError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt.connected_at is not None:
                streak = 0
                backoff.connection_ended(time.monotonic() - attempt.connected_at)
            if self.halt.is_set():
                return
            streak += 1
            delay = backoff.next_delay_s()
            self.stats.last_error = f"{link.label}: {reason}"
            log.log(
                logging.WARNING if streak == 1 else logging.INFO,
                "connection %s lost or refused: %s; reconnecting in %.2f s",
                link.label,
                reason,
                delay,
                extra={"conn": attempt.conn, "url": link.url, "failures_in_row": streak},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.halt.wait(), delay)

    async def _session(self, attempt: _Attempt) -> None:
        link, opts = self.link, self.options
        async with connect(
            link.url,
            ping_interval=opts.ping_interval_s,
            ping_timeout=opts.ping_timeout_s,
            close_timeout=opts.close_timeout_s,
            max_size=MAX_FRAME_BYTES,
            max_queue=_WS_MAX_QUEUE,
            compression=None,
        ) as ws:
            attempt.connected_at = time.monotonic()
            tape = ConnectionTape(attempt.conn, self.venue, link.channel, link.url)
            await self._put(tape.connect_marker(self.clock()))
            self.stats.connections_up += 1
            messages = list(link.messages)
            if link.private and self.user_data_request is not None:
                attempt.request_id = next(self._request_ids)
                messages = [self.user_data_request(attempt.request_id, self.clock() // MS)]
            closer = asyncio.create_task(self._close_when_halted(ws))
            sender = asyncio.create_task(_send_spaced(ws, messages))
            reason = "cancelled"
            try:
                await self._read(ws, tape, attempt)
                who = "us" if self.halt.is_set() else "the venue"
                reason = f"closed by {who}: code {ws.close_code} {ws.close_reason}".rstrip()
            except ConnectionClosed as exc:
                reason = f"connection lost: {exc}"
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                closer.cancel()
                sender.cancel()
                self.stats.connections_up -= 1
                if link.private:
                    self.stats.private_subscribed = False
                marker = tape.disconnect_marker(self.clock(), reason)
                if reason == "cancelled":
                    with contextlib.suppress(asyncio.QueueFull):
                        self.queue.put_nowait((link.stream, marker))
                else:
                    await self._put(marker)

    async def _close_when_halted(self, ws: ClientConnection) -> None:
        await self.halt.wait()
        await ws.close()

    async def _read(self, ws: ClientConnection, tape: ConnectionTape, attempt: _Attempt) -> None:
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
            if not is_data_frame(message):
                reply = classify_reply(message, now_ms=ts_recv // MS)
                if reply is not None:
                    self._on_reply(attempt, reply)

    def _on_reply(self, attempt: _Attempt, reply: Reply) -> None:
        link = self.link
        ours = link.private and (reply.id == attempt.request_id or reply.id is None)
        if reply.error is None:
            if ours and isinstance(reply.result, dict) and "subscriptionId" in reply.result:
                self.stats.private_subscribed = True
                log.info("user-data stream subscribed", extra={"conn": attempt.conn})
            return
        if isinstance(reply.error, AuthError | RateLimited) or ours:
            if link.private:
                self.stats.private_subscribed = False
            raise reply.error
        self.stats.last_error = f"{link.label}: {reply.error}"
        log.error("venue refused a request: %s", reply.error, extra={"conn": attempt.conn})

    async def _put(self, frame: RawFrame) -> None:
        if self.queue.full():
            self.stats.queue_full_waits += 1
        await self.queue.put((self.link.stream, frame))


async def _send_spaced(ws: ClientConnection, messages: list[str]) -> None:
    for n, message in enumerate(messages):
        if n:
            await asyncio.sleep(_SEND_INTERVAL_S)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)
