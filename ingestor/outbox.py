"""Track one connection slot's streams, its SUBSCRIBE/UNSUBSCRIBE messages and their answers.

A slot's streams go in the combined-stream URL while it stays short, else they are subscribed by
message in chunks. Every message carries a fresh id; a refused multi-stream message is split in
halves and retried until the refused stream itself is found, so one unknown symbol never holds
back the others. Messages leave through :func:`send_paced`, under the per-connection rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from urllib.parse import quote

import orjson

from tickpipe.common.errors import VenueError
from tickpipe.common.links import Reply
from tickpipe.ingestor.subscriptions import TokenBucket, chunked
from tickpipe.ingestor.wsclient import ConnectionClosed, WsConnection

__all__ = ["StreamRequests", "send_paced"]


class StreamRequests:
    """The streams of one slot and the control messages in flight on its live sessions."""

    def __init__(
        self, streams: list[str], ws_base: str, *, max_url_chars: int = 0, subscribe_chunk: int = 1
    ) -> None:
        self.streams = streams
        self.ws_base = ws_base.rstrip("/")
        self.max_url_chars = max_url_chars  # the venue's (``CombinedStreams``)
        self.subscribe_chunk = subscribe_chunk
        self._sent: dict[int, tuple[str, list[str]]] = {}
        self._outboxes: set[asyncio.Queue[str]] = set()
        self._ids = itertools.count(1)

    def plan(self) -> tuple[str, list[str]]:
        """Return the URL and the SUBSCRIBE messages that open a session with every stream."""
        # quoted: the ``+`` of ``kline_1d@+08:00`` would read as a space in a query
        url = (
            f"{self.ws_base}/stream?streams={'/'.join(quote(s, safe='@!:') for s in self.streams)}"
        )
        if self.streams and len(url) <= self.max_url_chars:
            return url, []
        return f"{self.ws_base}/stream", self.messages("SUBSCRIBE", list(self.streams))

    def messages(self, method: str, streams: list[str]) -> list[str]:
        """Build (and remember) the messages for ``streams``, one per chunk."""
        out = []
        for chunk in chunked(streams, self.subscribe_chunk):
            request_id = next(self._ids)
            self._sent[request_id] = (method, chunk)
            out.append(orjson.dumps({"method": method, "params": chunk, "id": request_id}).decode())
        return out

    def open_outbox(self, first: list[str]) -> asyncio.Queue[str]:
        """Register a live session's outbox, holding ``first`` to send."""
        outbox: asyncio.Queue[str] = asyncio.Queue()
        for message in first:
            outbox.put_nowait(message)
        self._outboxes.add(outbox)
        return outbox

    def close_outbox(self, outbox: asyncio.Queue[str]) -> None:
        self._outboxes.discard(outbox)

    def _send(self, method: str, streams: list[str]) -> None:
        for outbox in self._outboxes:
            for message in self.messages(method, streams):
                outbox.put_nowait(message)

    def change(self, method: str, streams: list[str]) -> None:
        """Subscribe or unsubscribe ``streams`` on every live session and on future ones."""
        if method == "SUBSCRIBE":
            self.streams.extend(s for s in streams if s not in self.streams)
        else:
            gone = set(streams)
            self.streams[:] = [s for s in self.streams if s not in gone]
        self._send(method, streams)

    def owns(self, reply: Reply) -> bool:
        """Tell whether ``reply`` answers one of our messages."""
        return isinstance(reply.id, int) and reply.id in self._sent

    def answer(self, reply: Reply) -> tuple[str, str, VenueError] | None:
        """Digest the answer to one of our messages; return ``(method, stream, error)`` when a
        single stream was refused (it is then dropped from the slot)."""
        method, streams = self._sent.pop(reply.id)
        if reply.error is None:
            return None
        if len(streams) > 1:
            half = len(streams) // 2
            self._send(method, streams[:half])
            self._send(method, streams[half:])
            return None
        stream = streams[0]
        if method == "SUBSCRIBE" and stream in self.streams:
            self.streams.remove(stream)
        return method, stream, reply.error


async def send_paced(ws: WsConnection, outbox: asyncio.Queue[str]) -> None:
    """Send queued control messages under the per-connection message rate (token bucket)."""
    bucket = TokenBucket()
    while True:
        message = await outbox.get()
        delay_ns = bucket.wait_ns(time.monotonic_ns())
        if delay_ns:
            await asyncio.sleep(delay_ns / 1e9 + 0.001)
            bucket.wait_ns(time.monotonic_ns())  # the token is there now: take it
        with contextlib.suppress(*ConnectionClosed):
            await ws.send(message)
