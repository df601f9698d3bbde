"""Define what a connection slot's sessions share: options, attempt records, how a session ended."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import websockets.exceptions

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AuthError, ConfigError, RateLimited, VenueError
from tickpipe.common.links import retry_after_from_header
from tickpipe.common.tls import ws_ssl
from tickpipe.ingestor import wsclient
from tickpipe.ingestor.wsclient import InvalidStatus, InvalidURI, WebSocketException, WsConnection

__all__ = [
    "MAX_FRAME_BYTES",
    "WS_MAX_QUEUE",
    "Attempt",
    "Run",
    "StaleConnection",
    "WsOptions",
    "is_shutdown",
    "session_outcome",
]

#: Largest WebSocket message accepted; Binance frames are far smaller.
MAX_FRAME_BYTES = 4 * 1024 * 1024


#: Messages the client buffers per connection before it stops reading the socket.
WS_MAX_QUEUE = 256


@dataclass(frozen=True, slots=True)
class WsOptions:
    """Keepalive, liveness, rotation and size limits of every connection."""

    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    close_timeout_s: float = 2.0
    #: No frame at all for this long: stale, whatever the cadence says.
    stale_max_s: float = 60.0
    #: A stream is overdue past ``max(stale_factor * its mean gap, stale_floor_s)``.
    stale_factor: float = 10.0
    stale_floor_s: float = 2.0
    #: Rotate before this connection age; the actual age is jittered down by up to 5 %.
    lifetime_s: float = 82_800.0
    #: How long a rotation waits for the new connection's first frame before giving up.
    rotate_timeout_s: float = 30.0
    #: Largest message accepted; a larger one closes the connection (1009) and is recorded.
    max_frame_bytes: int = MAX_FRAME_BYTES

    #: The WebSocket client (:data:`ingestor.wsclient.WS_CLIENTS`); empty: picows if installed.
    client: str = ""

    def connect(
        self, url: str, headers: Mapping[str, str] | None = None, verify_tls: bool = True
    ) -> AbstractAsyncContextManager[WsConnection]:
        """Open ``url`` with these options: pings, close timeout, frame cap, no compression.

        The client buffers at most ``WS_MAX_QUEUE`` messages before it stops reading the socket.
        """
        return wsclient.connect(
            self.client or wsclient.default_client(),
            url,
            ssl_context=ws_ssl(url, verify_tls),
            headers=headers,
            ping_interval_s=self.ping_interval_s,
            ping_timeout_s=self.ping_timeout_s,
            close_timeout_s=self.close_timeout_s,
            max_size=self.max_frame_bytes,
            max_queue=WS_MAX_QUEUE,
        )


class StaleConnection(websockets.exceptions.WebSocketException):
    """The connection is open but mute: nothing arrived within its liveness limits."""


@dataclass(slots=True)
class Attempt:
    conn: str
    connected_at: float | None = None
    request_id: int | None = None


@dataclass(slots=True)
class Run:
    """One session of the slot and the events it shares with :meth:`Connection.keep_connected`."""

    attempt: Attempt
    task: asyncio.Task[None] | None = None
    delivered: asyncio.Event = field(default_factory=asyncio.Event)
    rotate: asyncio.Event = field(default_factory=asyncio.Event)
    retire: asyncio.Event = field(default_factory=asyncio.Event)
    rotate_reason: str = ""
    stale_reason: str = ""


def session_outcome(run: Run, url: str, backoff: Backoff) -> tuple[str, float | None]:
    """Return why a finished session ended and how long it was up; raise if it is fatal.

    A refused key or a bad URL is fatal (:class:`ConfigError`); a rate limit or a 418/429
    handshake makes ``backoff`` wait at least the venue's ``Retry-After``.
    """
    assert run.task is not None
    attempt = run.attempt
    uptime = None if attempt.connected_at is None else time.monotonic() - attempt.connected_at
    exc = run.task.exception() if not run.task.cancelled() else None
    if exc is None:
        return "closed by the venue", uptime
    if isinstance(exc, AuthError):
        raise ConfigError(str(exc)) from None
    if isinstance(exc, InvalidURI):
        raise ConfigError(f"{url} is not a WebSocket URL: {exc}") from None
    if isinstance(exc, RateLimited):
        backoff.wait_at_least(exc.retry_after_s)
        return str(exc), uptime
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (418, 429):
            header = exc.response.headers.get("Retry-After")
            backoff.wait_at_least(retry_after_from_header(header) or 0.0)
        return f"handshake refused with HTTP {status}", uptime
    if isinstance(exc, (OSError, TimeoutError, VenueError, *WebSocketException)):
        return f"{type(exc).__name__}: {exc}", uptime
    raise exc


def is_shutdown(message: str | bytes) -> bool:
    if isinstance(message, bytes):
        return b'"serverShutdown"' in message[:200]
    return '"serverShutdown"' in message[:200]
