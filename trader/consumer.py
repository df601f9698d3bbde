"""Read the trader's consumer-group streams while, and only while, its lease is fresh.

:class:`GroupConsumer` reads ``signals`` and ``order-updates`` as consumer ``TICKPIPE_INSTANCE``
of group ``trader``: first this consumer's pending entries, then new ones with a short block.
Nothing is read while the lease is not fresh (a read would take entries into this consumer's
pending list that it could not handle). Acknowledgements are fenced by the lease of the
stream's hash slot. :meth:`GroupConsumer.claim` moves entries left pending elsewhere (a previous
owner, or a read that arrived as the lease was lost) to this consumer with ``XAUTOCLAIM``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.backoff import Backoff
from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.errors import RedisUnavailable
from tickpipe.common.names import GROUP_TRADER
from tickpipe.common.redis_io import redis_errors, xreadgroup_streams
from tickpipe.common.schema import text_of
from tickpipe.common.settings import Settings
from tickpipe.common.stopping import wait_stop
from tickpipe.trader.fence import Change
from tickpipe.trader.lease import Lease

__all__ = ["GroupConsumer", "Handler"]

log = logging.getLogger("tickpipe.trader")

Handler = Callable[[str, str, dict[bytes, bytes]], Coroutine[Any, Any, None]]


@dataclass(eq=False)
class GroupConsumer:
    """This trader's reads and acknowledgements of its consumer-group streams."""

    redis: aioredis.Redis
    settings: Settings
    lease: Lease
    counts: dict[str, int]
    _: KW_ONLY
    idle_s: float
    #: An error a follow-up task left: raised by the reading loop.
    failure: Callable[[], BaseException | None]
    on_outage: Callable[[str], None]
    signals_lease: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        keys = self.settings.keys
        self.signals_lease = {keys.signals(p): k for p, k in self.lease.signals_keys.items()}

    async def consume(
        self,
        streams: list[str],
        handle: Handler,
        stop: asyncio.Event,
        *,
        count: int,
        reread: Callable[[], bool] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        """Handle this consumer's pending entries, then new ones, until ``stop`` is set.

        ``reread`` is asked before each read: ``True`` goes back to this consumer's pending
        entries, as after a Redis outage or a claim. Nothing is read while the lease is not
        fresh, nor while ``ready`` says no; a Redis outage is reported to ``on_outage``.
        """
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        with RedisOutage(log, "trader reading " + ", ".join(streams)) as outage:
            cursors = dict.fromkeys(streams, "0")
            while not stop.is_set():
                failure = self.failure()
                if failure is not None:  # an order's follow-up failed: the term ends
                    raise failure
                if reread is not None and reread():
                    cursors = dict.fromkeys(streams, "0")
                if not self.lease.fresh() or (ready is not None and not ready()):  # wait a moment
                    await wait_stop(stop, min(0.05, self.idle_s))
                    continue
                try:
                    await self._consume_once(cursors, handle, stop, count)
                    backoff.attempt = 0
                    outage.recovered()
                except RedisUnavailable as exc:  # what was read and not done stays pending
                    outage.failed(exc)
                    self.counts["redis_outages"] += 1
                    self.on_outage("redis-reconnect")
                    cursors = dict.fromkeys(streams, "0")
                    await wait_stop(stop, backoff.next_delay_s())

    async def _consume_once(
        self, cursors: dict[str, str], handle: Handler, stop: asyncio.Event, count: int
    ) -> None:
        idle = all(c == ">" for c in cursors.values())
        started = time.monotonic()
        async with redis_errors():
            reply: Any = await xreadgroup_streams(  # one call per stream on a Redis Cluster
                self.redis,
                GROUP_TRADER,
                self.settings.instance,
                cursors,
                count=count,
                block=int(self.idle_s * 1000) if idle else None,
            )
        got = 0
        # RESP2 reply: [(stream, [(entry id, fields, or None if trimmed while pending), ...]), ...]
        for raw_stream, entries in reply or []:
            stream = text_of(raw_stream)
            if not entries and cursors[stream] != ">":
                cursors[stream] = ">"  # pending entries done
            for raw_id, fields in entries:
                if stop.is_set():
                    return
                entry_id = text_of(raw_id)
                got += 1
                if cursors[stream] != ">":
                    cursors[stream] = entry_id
                async with redis_errors():
                    if not fields:  # trimmed while pending: nothing to do
                        await self.ack(stream, entry_id)
                        continue
                    await handle(stream, entry_id, fields)
        waited = time.monotonic() - started
        if not got and idle and waited < self.idle_s / 2:  # a client that does not block
            await wait_stop(stop, self.idle_s - waited)

    async def ack(self, stream: str, entry_id: str) -> None:
        """Acknowledge an entry of ``stream``, fenced by the lease of its hash slot."""
        lease_key = self.signals_lease.get(stream, self.lease.account_key)
        await self.lease.fence.apply(
            Change(lease_key).write("XACK", stream, GROUP_TRADER, entry_id)
        )

    async def claim(self, streams: list[str], *, min_idle_ms: int) -> int:
        """Move entries pending for at least ``min_idle_ms`` to this consumer; return how many."""
        total = 0
        for stream in streams:
            start: bytes | str = "0-0"
            while True:
                reply = await self.redis.xautoclaim(
                    stream,
                    GROUP_TRADER,
                    self.settings.instance,
                    min_idle_time=min_idle_ms,
                    start_id=start,
                    count=self.settings.batch_size,
                )
                total += len(reply[1])
                if text_of(reply[0]) == "0-0":
                    break
                start = reply[0]
        return total
