"""Find holes in what the ingestor records and have them filled (the shell side of gaps.py).

:class:`GapWatch` follows every data frame of the market connections: a trade id (or aggregate
trade id) that skips ahead, or a depth diff that does not follow on, is written as a ``gap``
marker and filled by :class:`~ingestor.rest.RestFetcher` (a trade backfill, a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from common.schema import RawFrame
from ingestor.gaps import DepthIds, TradeIds, depth_ids_of, trade_id_of
from ingestor.rest import RestFetcher
from ingestor.writer import IngestorStats, WriteQueue

if TYPE_CHECKING:
    from ingestor.connection import Connection

__all__ = ["GapWatch"]


class GapWatch:
    """Watch live trade and depth ids for holes; mark them and ask :class:`RestFetcher` to fill.

    A trade id (or aggregate trade id) that skips ahead (after a reconnect, or a venue-side
    gap) is backfilled over REST; a depth diff that does not follow on, and every connection
    that starts delivering depth, gets a fresh snapshot. Each hole is written as a ``gap``
    marker.
    """

    def __init__(
        self,
        rest: RestFetcher,
        queue: WriteQueue,
        stats: IngestorStats,
        venue: str,
        clock: Callable[[], int],
    ) -> None:
        self.rest = rest
        self.queue = queue
        self.stats = stats
        self.venue = venue
        self.clock = clock
        self.trade_ids = TradeIds()
        self.agg_ids = TradeIds()
        self.depth_ids = DepthIds()

    def on_frame(self, connection: Connection, stream: str, message: str | bytes) -> None:
        """Check one data frame of ``stream`` for a trade-id or depth-id hole."""
        if "@depth" in stream:
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
        event = {"event": "gap", "kind": kind, "symbol": symbol, "first_id": first}
        data = orjson.dumps({**event, "last_id": last, **more}).decode()
        return RawFrame("marker", self.venue, "", 0, self.clock(), data, "market")

    def _put(self, stream: str, marker: RawFrame) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((stream, marker))

    def on_delivered(self, connection: Connection) -> None:
        """Ask for a snapshot of every depth stream of a connection that started delivering."""
        for stream in connection.streams or ():
            symbol, _, channel = stream.partition("@")
            if channel.startswith("depth"):
                self.rest.snapshot(connection.link.stream, symbol.upper(), "connected")


#: The ``kind`` of a ``gap`` marker per trade id space.
_GAP_KINDS = {"trades": "trade_ids", "aggTrades": "agg_trade_ids"}
