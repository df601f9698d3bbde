"""Read the partitions' trades and quotes into the trader's market view (its one Redis side).

:class:`MarketFeed` keeps, per ``trades`` and ``quotes`` stream, the newest entry id it has read:
:meth:`MarketFeed.read` (every 0.1 s, from :mod:`trader.tasks`) reads only what was written since,
newest first and at most :data:`DEPTH` entries, and feeds them to the pure
:class:`trader.market.MarketView` oldest first. :meth:`MarketFeed.load` reads the newest entries
again (at the start of a term, and for one symbol when the view has no fresh price for it).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from common.schema import decode_fields
from common.settings import Settings
from trader.market import MarketView

__all__ = ["DEPTH", "MarketFeed"]

#: Entries read from the end of a stream at most per read.
DEPTH = 500


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    """Order stream entry ids (``ms-seq``) as numbers."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class MarketFeed:
    """Feed ``view`` from the trades and quotes streams of ``settings``' partitions."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, view: MarketView) -> None:
        self.redis = redis
        self.settings = settings
        self.view = view
        self.last_ids: dict[str, str] = {}  # stream -> newest entry id read

    def streams(self, symbol: str | None = None) -> list[tuple[str, str]]:
        """``(kind, stream)`` of the trades and quotes streams (of ``symbol``'s partition)."""
        keys = self.settings.keys
        out = []
        for partition, symbols in self.settings.partitions().items():
            if symbol is None or symbol in symbols:
                out += [("trade", keys.trades(partition)), ("quote", keys.quotes(partition))]
        return out

    def _see(self, kind: str, stream: str, entries: Any) -> None:
        if entries:
            last = _text(entries[0][0])
            if _id_key(last) > _id_key(self.last_ids.get(stream, "0-0")):
                self.last_ids[stream] = last
        for _, fields in reversed(entries or []):  # oldest first: the newest stays
            data = decode_fields(fields)
            symbol, ts_recv = data.get("symbol", ""), int(data.get("ts_recv") or 0)
            if kind == "trade":
                self.view.see_trade(symbol, data.get("price", ""), ts_recv)
            else:
                self.view.see_quote(
                    symbol, data.get("bid_price", ""), data.get("ask_price", ""), ts_recv
                )

    async def load(self, symbol: str | None = None) -> None:
        """Read the newest trades and quotes (of ``symbol``'s partition) into the view."""
        for kind, stream in self.streams(symbol):
            self._see(kind, stream, await self.redis.xrevrange(stream, count=DEPTH))

    async def read(self) -> None:
        """Read the trades and quotes written since the last read (the newest ones at most)."""
        for kind, stream in self.streams():
            last = self.last_ids.get(stream)
            if last is None:
                entries: Any = await self.redis.xrevrange(stream, count=DEPTH)
            else:
                entries = await self.redis.xrevrange(stream, min=f"({last}", count=DEPTH)
            self._see(kind, stream, entries)
