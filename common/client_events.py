"""Share what every venue client does with its connections: enter, read, judge an error.

The consumer's bounded buffer and its slow-consumer policy are :mod:`venues.clients`'s
(:class:`~venues.clients.EventBuffer`). :func:`reconnect_delay` says what a connection error
means: a rejected key (:class:`AuthError`) is raised, a rate limit (or a 418/429 handshake) waits
at least its ``Retry-After``, any error a connection can suffer backs off (capped, jittered),
anything else is raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AuthError, RateLimited, VenueError
from tickpipe.common.links import retry_after_from_header

__all__ = ["ClientContext", "read_forever", "reconnect_delay"]

log = logging.getLogger("tickpipe.client")


class ClientContext:
    """``async with client:`` connects on entry and closes on exit (every venue's client)."""

    async def connect_to_websocket(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.connect_to_websocket()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def reconnect_delay(error: BaseException, backoff: Backoff, venue: str = "") -> float:
    """Return the delay before reconnecting after ``error``, or raise it if it is fatal.

    A 418/429 handshake waits at least the venue's ``Retry-After``, as a rate limit does.
    """
    if isinstance(error, AuthError):
        raise error
    if isinstance(error, RateLimited):
        backoff.wait_at_least(error.retry_after_s)
    elif isinstance(error, InvalidStatus) and error.response.status_code in (418, 429):
        header = error.response.headers.get("Retry-After")
        backoff.wait_at_least(retry_after_from_header(header) or 0.0)
    elif not isinstance(
        error, OSError | TimeoutError | WebSocketException | VenueError | ConnectionClosed
    ):
        raise error
    delay = backoff.next_delay_s()
    log.warning(
        "venue connection lost; reconnecting",
        extra={"venue": venue, "error": str(error), "delay_s": round(delay, 3)},
    )
    return delay


async def read_forever(
    current: Callable[[], ClientConnection | None],
    reopen: Callable[[], Awaitable[ClientConnection]],
    take: Callable[[str | bytes], Awaitable[None]],
    *,
    closed: Callable[[], bool],
    verdict: Callable[[BaseException], float],
    backoff: Backoff,
    dropped: Callable[[], None],
    fail: Callable[[BaseException], None],
) -> None:
    """Hand every frame of one connection to ``take`` until ``closed()``, reopening it.

    ``current()`` is the open connection (``None``: ``reopen()`` opens the next one). After an
    error ``verdict`` gives the delay before reopening (``dropped()`` is called first, to forget
    the connection and what it carried) or raises a fatal error, which goes to ``fail``. How long
    each connection lasted tells ``backoff`` whether it was worth resetting.
    """
    while not closed():
        ws = current()
        opened: float | None = None
        try:
            if ws is None:
                ws = await reopen()
            opened = time.monotonic()
            async for frame in ws:
                await take(frame)
            raise ConnectionError(f"closed by the venue: code {ws.close_code}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if closed():
                return
            try:
                delay = verdict(exc)
            except Exception as fatal:
                fail(fatal)
                return
            if opened is not None:
                backoff.connection_ended(time.monotonic() - opened)
            dropped()
            await asyncio.sleep(delay)
