"""Turn recorded frames into their partitions' raw entries as the ingestor writes them (pure).

One :class:`RawRouter` per session: each frame goes to its symbol's partition (a frame of no
symbol, such as a subscription reply, to the partition of the frame before it), each partition
starts with a ``connect`` marker of the session's connection id, sequence numbers count per
partition, a REST depth answer is wrapped as the ingestor wraps it (``{"symbol", "request",
"reason", "response"}``) and a WebSocket frame without a channel is ``market``. ``tickpipe
replay`` writes these entries to Redis; ``tickpipe backtest`` hands the same entries to the
processor's code directly, so both see the same raw stream.
"""

from __future__ import annotations

import orjson

from tickpipe.common.contract import MarkerEvent, RawKind, marker_data
from tickpipe.common.names import Partition
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.tools.recordings import REST_BODY, Recorded, symbol_of

__all__ = ["LEFT_OUT", "RawRouter", "wrap_rest"]

#: The kind counted for a REST depth answer no frame names (nothing can use it).
LEFT_OUT = "rest of no symbol (left out)"


def wrap_rest(symbol: str, body: str, reason: str = "replay") -> str:
    """The ingestor's ``rest`` frame around a venue's depth answer (the body kept as is)."""
    head = orjson.dumps(
        {"symbol": symbol, "request": {"path": "depth", "symbol": symbol}, "reason": reason}
    )
    return head[:-1].decode() + ',"response":' + body + "}"


class RawRouter:
    """Route one session's recorded frames to their partitions' raw streams (module doc)."""

    def __init__(self, settings: Settings, conn: str) -> None:
        self.settings = settings
        self.venue = settings.venue
        self.conn = conn
        self.seqs: dict[str, int] = {}  # stream -> last sequence number
        self.partitions: dict[str, Partition] = {}  # stream -> its partition
        self._streams: dict[str | None, str] = {}
        self._last: str | None = None
        self.no_symbol = 0

    def route(self, rec: Recorded | tuple[int, str]) -> tuple[list[tuple[str, RawFrame]], str]:
        """Return the entries ``rec`` makes (a marker first in a new partition) and its kind.

        The kind is the raw kind written, or :data:`LEFT_OUT` when the frame itself is left out.
        """
        if type(rec) is not Recorded:
            rec = Recorded(rec[0], rec[1], "ws", "", symbol_of("ws", rec[1]))
        ts, data, kind, channel, symbol = rec
        if symbol is None and kind == "ws":
            symbol = symbol_of(kind, data)
        stream = self._streams.get(symbol)
        if stream is None:
            if symbol is None:
                self.no_symbol += 1
                stream = self._last or self._stream(next(iter(self.settings.partitions())))
            else:
                part = self.settings.partition_of(symbol, self.venue)
                stream = self._streams[symbol] = self._stream(part)
        out: list[tuple[str, RawFrame]] = []
        if stream not in self.seqs:
            self.seqs[stream] = 0
            marker = marker_data(MarkerEvent.CONNECT, conn=self.conn, url="replay")
            out.append((stream, RawFrame(RawKind.MARKER, self.venue, self.conn, 0, ts, marker)))
        self._last = stream
        if kind == REST_BODY:
            if symbol is None:
                return out, LEFT_OUT
            kind, data = RawKind.REST, wrap_rest(symbol, data)
        elif kind == "ws" and not channel:
            channel = "market"
        self.seqs[stream] += 1
        frame = RawFrame(kind, self.venue, self.conn, self.seqs[stream], ts, data, channel)
        out.append((stream, frame))
        return out, str(kind)

    def _stream(self, partition: Partition) -> str:
        stream = self.settings.keys.raw(partition)
        self.partitions[stream] = partition
        return stream
