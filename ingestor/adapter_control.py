"""Follow the control streams of an adapter-driven venue: subscribe and unsubscribe at runtime.

The entries are those of :mod:`ingestor.control` (``{"action": "subscribe" | "unsubscribe",
"symbols": "BTC/USD,ETH/USD"}``); the whole history is replayed at start so runtime additions
survive a restart, then new entries are applied as they come. Such a venue (Alpaca) carries every
partition on one market-data connection, so each change goes to that adapter's live session (and
to every later one). ``snapshot`` entries have no meaning there and are ignored; a ``backfill``
(the venue's trade ids are not contiguous, so no hole can be named by them) is logged and
ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import redis.asyncio as aioredis

from tickpipe.common.errors import DecodeError
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.ingestor.control import follow_control, replay_control
from tickpipe.ingestor.subscriptions import parse_control
from tickpipe.venues.registry import venue

__all__ = ["AdapterControl", "Changes"]

log = logging.getLogger("tickpipe.ingestor")


class Changes(Protocol):
    """An adapter that subscribes and unsubscribes symbols at runtime."""

    def change(self, action: str, symbols: list[str]) -> None: ...


class AdapterControl:
    """Apply control entries of every shard of the venue to the market-data adapter."""

    def __init__(self, settings: Settings, adapter: Changes) -> None:
        self.settings = settings
        self.adapter = adapter
        self.pairs = venue(settings.venue).symbol_pairs
        keys = settings.keys
        self.keys = [keys.control(Partition(settings.venue, n)) for n in range(settings.shards)]

    def _handle(self, key: str, fields: Any) -> None:
        try:
            request = parse_control(fields, pairs=self.pairs)
        except DecodeError as exc:
            log.warning("ignoring a control entry on %s: %s", key, exc)
            return
        if request.action == "backfill":
            log.warning(
                "ignoring a backfill request on %s: %s trades cannot be fetched by id range",
                key,
                self.settings.venue,
                extra={"symbol": request.symbols[0], "reason": request.reason},
            )
            return
        if request.action not in ("subscribe", "unsubscribe"):
            return
        log.info("%s %s on %s", request.action, ",".join(request.symbols), self.settings.venue)
        self.adapter.change(request.action, list(request.symbols))

    async def run(self, redis: aioredis.Redis, halt: asyncio.Event) -> None:
        """Replay the history, then follow new entries until ``halt`` is set."""
        last = await replay_control(redis, self.keys, self._handle)
        await follow_control(redis, last, halt, self._handle)
