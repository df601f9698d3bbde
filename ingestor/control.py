"""Change a partition's subscriptions at runtime through its control stream.

Writers (the CLI ``tickpipe subscribe|unsubscribe``, the processor's snapshot and backfill
requests) append to ``keys.control(partition)``; :class:`Subscriptions` in the ingestor replays
that stream at start (so runtime additions survive a restart) and then follows it. Entries:

* ``{"action": "subscribe" | "unsubscribe", "symbols": "A,B"}``: every configured channel of
  those symbols (``TICKPIPE_CHANNELS``) is added or removed;
* ``{"action": "snapshot", "symbol": "A", "reason": ...}``: a fresh REST depth snapshot;
* ``{"action": "backfill", "symbol": "A", "first_id", "last_id", "stream": "trades" |
  "aggTrades", "reason", "entry_id"}``: a REST backfill of those trade ids (inclusive), served
  by :class:`ingestor.rest.RestFetcher` with ids already fetched or queued merged.

Snapshot and backfill entries are acted on only live, never when the history is replayed at
start: a replayed one was served by the previous run or is asked for again (the processor
requests every hole still open once it sees this run's ``connect`` marker, and the ingestor's
own gap tracking backfills from raw's last trade id to the first live one).

Streams are spread over connection slots within the per-connection cap; a new slot opens its own
connection. A stream the venue refuses is logged, written as a marker and dropped; the others
carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.contract import ControlAction, subscription_entry
from tickpipe.common.errors import ConfigError, DecodeError
from tickpipe.common.names import Partition, partitions_for
from tickpipe.common.redis_io import REDIS_ERRORS
from tickpipe.common.settings import Settings
from tickpipe.ingestor.connection import Connection
from tickpipe.ingestor.subscriptions import (
    MAX_STREAMS_PER_CONN,
    ControlRequest,
    PartitionSubs,
    parse_control,
    parse_symbols,
    streams_for,
)
from tickpipe.venues.registry import venue

__all__ = [
    "Subscriptions",
    "follow_control",
    "replay_control",
    "request_subscription_change",
]

log = logging.getLogger("tickpipe.ingestor")

#: Control entries replayed at most at start.
_REPLAY_MAX = 100_000


async def request_subscription_change(
    redis: aioredis.Redis, settings: Settings, action: str, symbols: Iterable[str] | str
) -> None:
    """Ask the running ingestor(s) to subscribe or unsubscribe ``symbols`` (``"A,B"`` or a list).

    Each symbol goes to the control stream of the partition it hashes to. Raises
    :class:`ValueError` for an unknown action or a malformed symbol.
    """
    subscription_entry(action, [])  # a wrong action is a ValueError before anything is written
    text = symbols if isinstance(symbols, str) else ",".join(symbols)
    try:
        names = parse_symbols(text, pairs=venue(settings.venue).symbol_pairs)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
    keys = settings.keys
    for partition, group in partitions_for(settings.venue, names, settings.shards).items():
        await redis.xadd(keys.control(partition), subscription_entry(action, group))  # type: ignore[arg-type]


SlotFactory = Callable[[Partition, int, list[str]], Connection]


class Subscriptions:
    """Own every partition's wanted streams and the connection slots that carry them."""

    def __init__(
        self,
        settings: Settings,
        make_slot: SlotFactory,
        *,
        cap: int = MAX_STREAMS_PER_CONN,
        on_snapshot: Callable[[Partition, str, str], None] | None = None,
        on_backfill: Callable[[Partition, ControlRequest], None] | None = None,
    ) -> None:
        self.settings = settings
        protocol = venue(settings.venue).combined_streams
        if protocol is None:
            raise ConfigError(f"venue {settings.venue} has no combined-stream slots")
        self.stream_name = protocol.stream_name
        self.make_slot = make_slot
        self.on_snapshot = on_snapshot
        self.on_backfill = on_backfill
        #: Snapshot and backfill entries passed over while replaying the history.
        self.replay_skipped = 0
        self.subs: dict[Partition, PartitionSubs] = {}
        self.slots: dict[tuple[Partition, int], Connection] = {}
        #: Slots opened after start; the shell starts a task for each.
        self.opened: asyncio.Queue[Connection] = asyncio.Queue()
        for partition, symbols in settings.partitions().items():
            subs = self.subs[partition] = PartitionSubs(cap=cap)
            subs.add(streams_for(symbols, settings.channels, self.stream_name))

    def initial_slots(self) -> list[Connection]:
        """Create the connection slots for the configured symbols (and any replayed changes)."""
        out = []
        for partition, subs in self.subs.items():
            for n in range(len(subs.slots)):
                out.append(self._slot(partition, n))
        return out

    def _slot(self, partition: Partition, n: int) -> Connection:
        conn = self.make_slot(partition, n, self.subs[partition].streams(n))
        conn.on_refused = lambda method, stream: self._refused(partition, method, stream)
        self.slots[(partition, n)] = conn
        return conn

    def _refused(self, partition: Partition, method: str, stream: str) -> None:
        if method == "SUBSCRIBE":
            self.subs[partition].remove([stream])

    def apply(self, partition: Partition, request: ControlRequest, *, live: bool = True) -> None:
        """Carry out one control request (``live`` False while replaying before any slot runs)."""
        subs = self.subs.setdefault(partition, PartitionSubs())
        if request.action == ControlAction.SNAPSHOT:
            if live and self.on_snapshot is not None:
                for symbol in request.symbols:
                    self.on_snapshot(partition, symbol, request.reason or "requested")
            return
        if request.action == ControlAction.BACKFILL:
            if live and self.on_backfill is not None:
                self.on_backfill(partition, request)
            return
        streams = streams_for(request.symbols, self.settings.channels, self.stream_name)
        subscribe = request.action == ControlAction.SUBSCRIBE
        changes = subs.add(streams) if subscribe else subs.remove(streams)
        method = "SUBSCRIBE" if subscribe else "UNSUBSCRIBE"
        log.info(
            "%s %s on %s",
            request.action,
            ",".join(request.symbols),
            partition,
            extra={"streams": sum(len(v) for v in changes.values())},
        )
        if not live:
            return
        for n, changed in changes.items():
            conn = self.slots.get((partition, n))
            if conn is not None:
                conn.change(method, changed)
            elif method == "SUBSCRIBE":
                self.opened.put_nowait(self._slot(partition, n))

    def _handle(self, partition: Partition, fields: Any, *, live: bool) -> None:
        try:
            request = parse_control(fields)
        except DecodeError as exc:
            log.warning("ignoring a control entry on %s: %s", partition, exc)
            return
        if not live and request.action in (ControlAction.SNAPSHOT, ControlAction.BACKFILL):
            self.replay_skipped += 1
            return
        self.apply(partition, request, live=live)

    async def replay(self, redis: aioredis.Redis) -> dict[str, bytes | str]:
        """Apply the subscribe/unsubscribe history; return the ids to follow from."""
        by_key = {self.settings.keys.control(p): p for p in self.subs}
        last = await replay_control(
            redis, by_key, lambda key, fields: self._handle(by_key[key], fields, live=False)
        )
        if self.replay_skipped:
            log.info(
                "replayed the control history without its %d snapshot and backfill requests",
                self.replay_skipped,
                extra={"skipped": self.replay_skipped},
            )
        return last

    async def follow(
        self, redis: aioredis.Redis, last: dict[str, bytes | str], halt: asyncio.Event
    ) -> None:
        """Apply new control entries until ``halt`` is set."""
        by_key = {self.settings.keys.control(p): p for p in self.subs}
        await follow_control(
            redis, last, halt, lambda key, fields: self._handle(by_key[key], fields, live=True)
        )


async def replay_control(
    redis: aioredis.Redis, keys: Iterable[str], handle: Callable[[str, Any], None]
) -> dict[str, bytes | str]:
    """Hand each control stream's history to ``handle(key, fields)``; return the ids to follow
    from (``0-0`` for a stream Redis could not read now: its history comes with the follow)."""
    last: dict[str, bytes | str] = {}
    for key in keys:
        last[key] = "0-0"
        try:
            entries: Any = await redis.xrange(key, count=_REPLAY_MAX)
        except REDIS_ERRORS as exc:
            log.warning("control history of %s not replayed yet: %s", key, exc)
            continue
        for entry_id, fields in entries:
            handle(key, fields)
            last[key] = entry_id
    return last


async def follow_control(
    redis: aioredis.Redis,
    last: dict[str, bytes | str],
    halt: asyncio.Event,
    handle: Callable[[str, Any], None],
) -> None:
    """Hand new control entries to ``handle(key, fields)`` until ``halt`` is set; ride out a
    Redis that cannot answer now (unreachable, BUSY, LOADING...), logged and counted."""
    with RedisOutage(log, "ingestor following control requests") as outage:
        while not halt.is_set():
            try:
                reply: Any = await redis.xread(last, count=100, block=200)  # type: ignore[arg-type]
            except REDIS_ERRORS as exc:
                outage.failed(exc)
                await asyncio.sleep(0.5)
                continue
            outage.recovered()
            for key, entries in reply or []:
                name = key.decode() if isinstance(key, bytes) else key
                for entry_id, fields in entries:
                    last[name] = entry_id
                    handle(name, fields)
