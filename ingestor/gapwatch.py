"""Find holes in what the ingestor records and have them filled (the shell side of gaps.py).

:class:`GapWatch` follows every data frame of the market connections: a trade id (or aggregate
trade id) that skips ahead, or a depth diff that does not follow on, is written as a ``gap``
marker and filled by :class:`~ingestor.rest.RestFetcher` (a trade backfill, a fresh snapshot).
The writer hands it what Redis lost of the frames it had written (:meth:`GapWatch.on_lost`),
which is recovered the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from tickpipe.common.contract import MarkerEvent, RawKind
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.backfills import ranges_of
from tickpipe.ingestor.gaps import DepthIds, TradeIds, backfill_ids_of, depth_ids_of, trade_id_of
from tickpipe.ingestor.liveness import stream_of
from tickpipe.ingestor.rest import RestFetcher
from tickpipe.ingestor.writer import IngestorStats, Item, WriteQueue

if TYPE_CHECKING:
    from tickpipe.ingestor.connection import Connection

__all__ = ["GapWatch"]

#: Raw kinds as plain strings: compared per frame, where an enum lookup costs.
_WS, _REST = RawKind.WS.value, RawKind.REST.value


@dataclass(eq=False)
class GapWatch:
    """Watch live trade and depth ids for holes; mark them and ask :class:`RestFetcher` to fill.

    A trade id (or aggregate trade id) that skips ahead (after a reconnect, or a venue-side
    gap) is backfilled over REST; a depth diff that does not follow on, and every connection
    that starts delivering depth, gets a fresh snapshot. Each hole is written as a ``gap``
    marker. :meth:`on_lost` does the same for what Redis lost of what was written.
    """

    rest: RestFetcher
    queue: WriteQueue
    stats: IngestorStats
    venue: str
    clock: Callable[[], int]
    trade_ids: TradeIds = field(init=False, default_factory=TradeIds)
    agg_ids: TradeIds = field(init=False, default_factory=TradeIds)
    depth_ids: DepthIds = field(init=False, default_factory=DepthIds)
    _waiting: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def on_frame(self, connection: Connection, stream: str, message: str | bytes) -> None:
        """Check one data frame of ``stream`` for a trade-id or depth-id hole."""
        if "@depth" in stream:
            if "@depth@" in stream or stream.endswith("@depth"):  # diffs; not depth5/10/20
                self._on_depth(connection, message)
            return
        if not stream.endswith(("@trade", "@aggTrade")):
            return
        trade = trade_id_of(message)
        if trade is None:
            return
        symbol, space, trade_id = trade
        ids = self.trade_ids if space == "trades" else self.agg_ids
        hole = ids.seen(symbol, trade_id)
        if hole is None:
            return
        first, last = hole
        self.stats.trade_gaps += 1
        raw = connection.link.stream
        self._put(raw, self._gap_marker(_GAP_KINDS[space], symbol, first, last))
        self.rest.backfill(raw, symbol, first, last, "trade id gap", id_space=space)

    def _on_depth(self, connection: Connection, message: str | bytes) -> None:
        ids = depth_ids_of(message)
        hole = None if ids is None else self.depth_ids.seen(*ids)
        if ids is None or hole is None:
            return
        self.stats.depth_gaps += 1
        self._put(connection.link.stream, self._gap_marker("depth_ids", ids[0], *hole))
        self.rest.snapshot(connection.link.stream, ids[0], "depth gap")

    def _gap_marker(
        self, kind: str, symbol: str, first: int, last: int, **more: object
    ) -> RawFrame:
        event = {"event": MarkerEvent.GAP, "kind": kind, "symbol": symbol, "first_id": first}
        data = orjson.dumps({**event, "last_id": last, **more}).decode()
        return RawFrame(RawKind.MARKER, self.venue, "", 0, self.clock(), data, "market")

    def _put(self, stream: str, marker: RawFrame) -> None:
        """Queue a marker; when the queue is full (Redis down, no journal), wait for room in a
        task of its own rather than drop it (the reader calling this cannot wait)."""
        try:
            self.queue.put_nowait((stream, marker))
        except asyncio.QueueFull:
            task = asyncio.get_running_loop().create_task(self.queue.put((stream, marker)))
            self._waiting.add(task)
            task.add_done_callback(self._waiting.discard)

    def on_delivered(self, connection: Connection) -> None:
        """Ask for a snapshot of every diff-depth stream of a connection that started delivering
        (partial depth, ``depth5/10/20``, is whole in every message: it needs none)."""
        for stream in connection.streams or ():
            symbol, _, channel = stream.partition("@")
            if channel.partition("@")[0] == "depth":
                self.rest.snapshot(connection.link.stream, symbol.upper(), "connected")

    def on_lost(self, stream: str, frames: list[RawFrame], whole: bool) -> list[Item]:
        """Recover what Redis lost of ``stream``; return the markers that record it.

        Lost trades (live frames and backfill pages) are fetched again over REST, each run of
        lost ids with a ``gap`` marker (``reason`` ``lost by Redis``); a lost depth diff or
        snapshot asks for a fresh snapshot. One ``redis_lost`` marker counts the lost frames
        per stream name (``whole``: none of the frames written last was left, so Redis may
        have lost older ones too).
        """
        ids: dict[tuple[str, str], set[int]] = {}
        snapshots: set[str] = set()
        names: Counter[str] = Counter()
        for frame in frames:
            name = _lost_name(frame)
            names[name] += 1
            if frame.kind == _WS:
                trade = trade_id_of(frame.data)
                depth = None if trade is not None else depth_ids_of(frame.data)
                if trade is not None:
                    ids.setdefault((trade[0], trade[1]), set()).add(trade[2])
                elif depth is not None:
                    snapshots.add(depth[0])
            elif frame.channel == "trades_backfill" and frame.kind == _REST:
                page = backfill_ids_of(frame.data)
                if page is not None:
                    ids.setdefault((page[0], page[1]), set()).update(page[2])
            elif frame.channel == "depth_snapshot" and frame.kind == _REST:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    snapshots.add(str(orjson.loads(frame.data)["symbol"]))
        channel = "private" if any(f.channel == "private" for f in frames) else "market"
        summary = {
            "event": MarkerEvent.REDIS_LOST,
            "frames": len(frames),
            "streams": dict(names),
            "whole": whole,
            "first_ts_recv": frames[0].ts_recv,
            "last_ts_recv": frames[-1].ts_recv,
        }
        text = orjson.dumps(summary).decode()
        out: list[Item] = [
            (stream, RawFrame(RawKind.MARKER, self.venue, "", 0, self.clock(), text, channel))
        ]
        for (symbol, space), lost_ids in sorted(ids.items()):
            for first, last in ranges_of(lost_ids):
                self.stats.trade_gaps += 1
                marker = self._gap_marker(
                    _GAP_KINDS[space], symbol, first, last, reason="lost by Redis"
                )
                out.append((stream, marker))
                self.rest.backfill(
                    stream, symbol, first, last, "lost by Redis", id_space=space, force=True
                )
        for symbol in sorted(snapshots):
            self.rest.snapshot(stream, symbol, "lost by Redis")
        return out


#: The ``kind`` of a ``gap`` marker per trade id space.
_GAP_KINDS = {"trades": "trade_ids", "aggTrades": "agg_trade_ids"}


def _lost_name(frame: RawFrame) -> str:
    """Name what a lost frame carried: its stream, REST channel, or kind."""
    if frame.kind == _WS:
        return stream_of(frame.data) or f"{frame.channel or 'ws'} other"
    if frame.kind == _REST:
        return frame.channel or "rest"
    return frame.kind
