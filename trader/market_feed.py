"""Read the partitions' trades and quotes into the trader's market view (its one Redis side).

:class:`MarketFeed` keeps, per ``trades`` and ``quotes`` stream, the newest entry id it has read.
:meth:`MarketFeed.read` (every 0.1 s, from :mod:`trader.tasks`) reads what was written since,
newest first, a page of :data:`PAGE` entries at a time, and stops as soon as it has the newest
entry of every symbol of the partition (or reaches what it read before, or :data:`DEPTH`
entries): on a busy stream that is one small page, whatever the trade rate. The newest entry of
each symbol goes to the pure :class:`trader.market.MarketView`. :meth:`MarketFeed.load` does the
same from the end of the stream (at the start of a term, and for one symbol when the view has
no fresh price for it).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.contract import entry_key
from tickpipe.common.schema import decode_fields, text_of
from tickpipe.common.settings import Settings
from tickpipe.trader.market import MarketView

__all__ = ["DEPTH", "MarketFeed"]

#: Entries read per page, newest first.
PAGE = 32
#: Entries read from the end of a stream at most per read.
DEPTH = 2000


class MarketFeed:
    """Feed ``view`` from the trades and quotes streams of ``settings``' partitions."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, view: MarketView) -> None:
        self.redis = redis
        self.settings = settings
        self.view = view
        self.last_ids: dict[str, str] = {}  # stream -> newest entry id read

    async def _newest(
        self, stream: str, symbols: set[str], since: str | None
    ) -> tuple[str | None, dict[str, dict[str, str]]]:
        """Return the stream's newest id and the newest entry of each symbol after ``since``."""
        newest: str | None = None
        found: dict[str, dict[str, str]] = {}
        top, read = "+", 0
        low = f"({since}" if since is not None else "-"
        while read < DEPTH and not symbols <= found.keys():
            page: Any = await self.redis.xrevrange(stream, max=top, min=low, count=PAGE)
            for entry_id, fields in page or []:
                newest = newest or text_of(entry_id)
                data = decode_fields(fields)
                found.setdefault(data.get("symbol", ""), data)
            read += len(page or [])
            if not page or len(page) < PAGE:
                break
            top = f"({text_of(page[-1][0])}"
        return newest, found

    async def _read(self, symbol: str | None, *, fresh: bool) -> None:
        partitions = self.settings.partitions()
        keys = self.settings.keys
        for partition, symbols in partitions.items():
            if symbol is not None and symbol not in symbols:
                continue
            for kind, stream in (
                ("trade", keys.trades(partition)),
                ("quote", keys.quotes(partition)),
            ):
                since = None if fresh else self.last_ids.get(stream)
                newest, found = await self._newest(stream, set(symbols), since)
                if newest is not None and entry_key(newest) > entry_key(
                    self.last_ids.get(stream, "0-0")
                ):
                    self.last_ids[stream] = newest
                for name, data in found.items():
                    self._see(kind, name, data)

    def _see(self, kind: str, symbol: str, data: dict[str, str]) -> None:
        ts_recv = int(data.get("ts_recv") or 0)
        if kind == "trade":
            self.view.see_trade(symbol, data.get("price", ""), ts_recv)
        else:
            self.view.see_quote(
                symbol, data.get("bid_price", ""), data.get("ask_price", ""), ts_recv
            )

    async def load(self, symbol: str | None = None) -> None:
        """Read the newest trade and quote of each symbol (of ``symbol``'s partition)."""
        await self._read(symbol, fresh=True)

    async def read(self) -> None:
        """Read the newest trade and quote of each symbol written since the last read."""
        await self._read(None, fresh=False)
