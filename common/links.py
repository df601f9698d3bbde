"""Describe venue connections in venue-neutral terms (pure: no I/O, no clock).

Every venue package plans its connections as :class:`Link` values, numbers the frames of one
connection with a :class:`ConnectionTape` (one per raw stream it writes: :class:`StreamTapes`)
and answers its own requests as :class:`Reply` values;
a venue whose sessions an adapter runs turns each received frame into a :class:`Step`; the
ingestor's connection slots run them without knowing which venue they talk to.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tickpipe.common.builders import new_raw_frame
from tickpipe.common.contract import MarkerEvent, RawKind
from tickpipe.common.errors import VenueError
from tickpipe.common.schema import RawFrame

__all__ = [
    "ConnectionTape",
    "Item",
    "Link",
    "Reply",
    "Step",
    "StreamTapes",
    "changed_symbols",
    "connection_id",
    "decoded_object",
    "retry_after_from_header",
    "run_token",
]


#: One raw entry for the write queue: (stream key, frame).
Item = tuple[str, RawFrame]


@dataclass(frozen=True, slots=True)
class Link:
    """One connection slot: where it connects, what it sends, and the stream its frames go to."""

    label: str
    url: str
    stream: str
    channel: str
    messages: tuple[str, ...] = ()
    private: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A venue's answer to one of our requests; ``error`` is set when it refused."""

    id: Any
    status: int | None
    result: Any = None
    error: VenueError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def retry_after_from_header(value: str | None) -> float | None:
    """Parse an HTTP ``Retry-After`` header given in seconds (the handshake's 429/418)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def changed_symbols(current: list[str], action: str, symbols: list[str]) -> list[str]:
    """Return the symbols an adapter wants after ``action`` (subscribe or unsubscribe)."""
    if action == "subscribe":
        return current + [s for s in dict.fromkeys(symbols) if s not in current]
    return [s for s in current if s not in symbols]


def run_token(ts_ns: int) -> str:
    """Return a short token, unique per ingestor start, that prefixes its connection ids."""
    return _base36(ts_ns // 1000)


def connection_id(label: str, token: str, attempt: int) -> str:
    """Name one connection: ``<label>/<run token>.<attempt>``, unique across restarts."""
    return f"{label}/{token}.{attempt}"


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


@dataclass(slots=True)
class ConnectionTape:
    """Number the frames of one connection from 1 and build its raw entries and markers.

    A marker's ``seq`` is the sequence of the last frame before it (0 for ``connect``), so
    ``(conn, seq)`` of frames stays a contiguous run 1..n that a reader can check for holes.
    """

    conn: str
    venue: str
    channel: str
    url: str
    seq: int = field(default=0)

    def frame(self, data: str | bytes, ts_recv: int) -> RawFrame:
        """Stamp one received frame; binary frames that are not UTF-8 are kept as base64."""
        self.seq += 1
        kind = "ws"
        if isinstance(data, str):
            text = data
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                kind, text = "ws-binary", base64.b64encode(data).decode()
        return new_raw_frame(kind, self.venue, self.conn, self.seq, ts_recv, text, self.channel)

    def connect_marker(self, ts_recv: int) -> RawFrame:
        return self._marker(
            {"event": MarkerEvent.CONNECT, "conn": self.conn, "url": self.url}, ts_recv
        )

    def disconnect_marker(self, ts_recv: int, reason: str) -> RawFrame:
        event = {
            "event": MarkerEvent.DISCONNECT,
            "conn": self.conn,
            "reason": reason,
            "frames": self.seq,
        }
        return self._marker(event, ts_recv)

    def _marker(self, event: dict[str, Any], ts_recv: int) -> RawFrame:
        data = orjson.dumps(event).decode()
        return RawFrame(
            RawKind.MARKER, self.venue, self.conn, self.seq, ts_recv, data, self.channel
        )


class StreamTapes:
    """One connection's tapes, one per raw stream it writes, each numbering its own frames.

    ``(conn, seq)`` thus stays a contiguous run in every stream; connect and disconnect markers
    go to every stream the connection has written to.
    """

    __slots__ = ("by_stream", "channel", "conn", "url", "venue")

    def __init__(self, conn: str, venue: str, channel: str, url: str, streams: Iterable[str]):
        self.conn, self.venue, self.channel, self.url = conn, venue, channel, url
        self.by_stream = {s: ConnectionTape(conn, venue, channel, url) for s in streams}

    def __getitem__(self, stream: str) -> ConnectionTape:
        return self.by_stream[stream]

    def of(self, stream: str, step: Step, ts_recv: int) -> ConnectionTape:
        """Return ``stream``'s tape; a stream first written now (a symbol added at runtime on a
        partition without configured ones) gets one, its connect marker going into ``step``."""
        tape = self.by_stream.get(stream)
        if tape is None:
            tape = ConnectionTape(self.conn, self.venue, self.channel, self.url)
            self.by_stream[stream] = tape
            step.items.append((stream, tape.connect_marker(ts_recv)))
        return tape

    def connect_markers(self, ts_recv: int) -> list[Item]:
        return [(s, t.connect_marker(ts_recv)) for s, t in self.by_stream.items()]

    def disconnect_markers(self, ts_recv: int, reason: str) -> list[Item]:
        return [(s, t.disconnect_marker(ts_recv, reason)) for s, t in self.by_stream.items()]


def decoded_object(frame: str | bytes) -> dict[str, Any] | None:
    """Decode a frame that may be a JSON object (leading whitespace allowed), else ``None``."""
    if isinstance(frame, bytes):
        maybe = frame[:64].lstrip().startswith(b"{")
    else:
        maybe = frame[:64].lstrip().startswith("{")
    if not maybe:
        return None
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


@dataclass(slots=True)
class Step:
    """What one received frame calls for."""

    items: list[Item] = field(default_factory=list)
    send: list[str | bytes] = field(default_factory=list)
    #: Liveness key of the frame's data (``None`` for control frames).
    stream: str | None = None
    delivered: bool = False
    #: Marker events (``{"event": ...}``) to write on the slot's own stream.
    markers: list[dict[str, object]] = field(default_factory=list)
    error: VenueError | None = None
