"""Run the trader's background work: lease, kill switch and limits, market, reconciliation.

* **lease** — renews the account's leases every quarter lease period
  (:class:`trader.lease.Lease`); a renewal refused ends the term (:class:`LeaseLost`). It runs
  until every other task of the term has ended, so orders in flight at stop are recorded.
* **kill switch** — reads ``{V}:kill-switch`` into memory every ``kill_switch_every_s``
  (default 0.1 s), so the per-signal risk check needs no round trip: a kill switch set now
  refuses new orders within that period (plus one Redis round trip).
* **guard** — every interval: while the kill switch is on every working order is cancelled;
  otherwise working orders that would grow a position past its limit are cancelled.
* **market** — every 0.1 s reads the trades and quotes written since its last read into the
  trader's market view (the risk check's prices, and the positions' mark prices).
* **reconcile** — compares the working orders with the venue, and adopts the venue's orders
  Redis has no intent of: at start, after every Redis outage, after every connect marker the
  ingestor writes into ``{V}:private-raw`` (a private-stream reconnect, so order updates may
  have been missed), after every reconnect of the trader's own WebSocket API connection, every
  ``TICKPIPE_RECONCILE_EVERY_S`` (default 60 s), and every 30 s while an order's outcome is
  still unknown.
* **claim** — every lease period, claims signals and order updates left pending for longer than
  a lease period (delivered to a trader that had lost its lease as it read them).
* **mark** — writes each position's mark price and unrealised profit from the market view.

Each loop survives Redis outages (it waits and goes on, and asks for a reconciliation once
Redis answers again) and ends when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from tickpipe.common.backoff import Backoff
from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.contract import MarkerEvent, RawKind, raw_frames_of
from tickpipe.common.errors import DecodeError, RedisUnavailable, VenueUnavailable
from tickpipe.common.redis_io import redis_errors
from tickpipe.common.schema import RawFrame, text_of
from tickpipe.common.stopping import wait_stop

if TYPE_CHECKING:
    from tickpipe.trader.owner import Trader

__all__ = [
    "KILL_SWITCH_EVERY_S",
    "MARKET_EVERY_S",
    "background_tasks",
    "connect_markers",
    "first_failure",
    "keep_lease",
]

log = logging.getLogger("tickpipe.trader")

#: How often the kill switch is read into memory: the longest a set kill switch can go unseen.
KILL_SWITCH_EVERY_S = 0.1
#: How often the trades and quotes written since the last read are read into the market view.
MARKET_EVERY_S = 0.1


async def _loop(
    name: str,
    stop: asyncio.Event,
    interval_s: float,
    step: Callable[[], Awaitable[None]],
    on_outage: Callable[[str], None] = lambda reason: None,
) -> None:
    """Call ``step`` every ``interval_s`` until ``stop``; wait out Redis and venue outages."""
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    with RedisOutage(log, f"trader {name}") as outage:
        while not stop.is_set():
            try:
                async with redis_errors():
                    await step()
                backoff.attempt = 0
                outage.recovered()
                await wait_stop(stop, interval_s)
            except RedisUnavailable as exc:
                outage.failed(exc)
                on_outage("redis-reconnect")
                await wait_stop(stop, backoff.next_delay_s())
            except VenueUnavailable as exc:
                log.warning("%s: waiting for an outage to end", name, extra={"error": str(exc)})
                await wait_stop(stop, backoff.next_delay_s())


async def keep_lease(trader: Trader, done: asyncio.Event) -> None:
    """Renew the term's lease every quarter period until ``done``; raise LeaseLost if lost."""
    lease = trader.lease
    with RedisOutage(log, "trader lease renewal") as outage:
        while not done.is_set():
            await wait_stop(done, lease.renew_s)
            if done.is_set():
                return
            try:
                async with redis_errors():
                    await lease.renew()
                outage.recovered()
            except RedisUnavailable as exc:  # not fresh for long: reads and orders pause
                outage.failed(exc)
                trader.redis_outage()


def connect_markers(entries: Any) -> list[str]:
    """Return the connection ids of the ``connect`` markers among raw stream entries."""
    out = []
    for _, fields in raw_frames_of(entries):
        try:
            frame = RawFrame.from_fields(fields)
        except DecodeError:
            continue
        if frame.kind != RawKind.MARKER:
            continue
        try:
            data = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("event") == MarkerEvent.CONNECT:
            out.append(frame.conn)
    return out


class _Background:
    def __init__(
        self, trader: Trader, stop: asyncio.Event, *, unresolved_every_s: float = 30.0
    ) -> None:
        self.trader = trader
        self.stop = stop
        self.wanted = asyncio.Event()
        self.reasons: list[str] = ["start"]
        self.wanted.set()
        self.private_last_id: str | None = None
        self.venue_connects: int | None = None
        self.unresolved_every_s = unresolved_every_s
        self.every_s = trader.settings.reconcile_every_s
        self.reconciled_at = time.monotonic()
        self.outage = RedisOutage(log, "trader reconciliation")
        trader.request_reconcile = self.request_reconcile

    def request_reconcile(self, reason: str) -> None:
        self.reasons.append(reason)
        self.wanted.set()

    async def kill_switch(self) -> None:
        await self.trader.refresh_kill_switch()

    async def guard(self) -> None:
        await self.trader.cancel_breaches()

    async def reconcile(self) -> None:
        with self.outage:
            await self._reconcile()

    async def _reconcile(self) -> None:
        while not self.stop.is_set():
            due_s = self.reconciled_at + self.every_s - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(self.unresolved_every_s, due_s))):
                    await self._wait_wanted()
            if self.stop.is_set():
                return
            if not self.wanted.is_set():
                if time.monotonic() >= self.reconciled_at + self.every_s:
                    self.request_reconcile("periodic")
                elif self.trader.core.unresolved():  # settle what is still unknown
                    self.request_reconcile("unresolved")
                else:
                    continue
            self.wanted.clear()
            self.reconciled_at = time.monotonic()
            reason = ",".join(dict.fromkeys(self.reasons)) or "requested"
            self.reasons = []
            outages = self.trader.outages
            try:
                async with redis_errors():
                    await self.trader.router.reconcile(reason=reason)
                self.outage.recovered()
                if self.trader.outages == outages:  # no outage since it began: signals go on
                    self.trader.reconciled.set()
            except (RedisUnavailable, VenueUnavailable) as exc:
                if isinstance(exc, RedisUnavailable):
                    self.outage.failed(exc)
                else:
                    log.warning("reconcile postponed", extra={"error": str(exc)})
                self.request_reconcile(reason)
                await wait_stop(self.stop, 1.0)

    async def _wait_wanted(self) -> None:
        stopping = asyncio.ensure_future(self.stop.wait())
        wanted = asyncio.ensure_future(self.wanted.wait())
        try:
            await asyncio.wait([stopping, wanted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            wanted.cancel()

    async def watch(self) -> None:
        """Request a reconciliation after a private-stream or WebSocket API reconnect."""
        trader = self.trader
        connects = getattr(trader.venue, "connects", None)
        if isinstance(connects, int):
            if self.venue_connects is not None and connects > self.venue_connects:
                self.request_reconcile("venue-reconnect")
            self.venue_connects = connects
        stream = trader.keys.private_raw(trader.venue_name)
        if self.private_last_id is None:
            last: Any = await trader.redis.xrevrange(stream, count=1)
            self.private_last_id = text_of(last[0][0]) if last else "0-0"
        reply: Any = await trader.redis.xread({stream: self.private_last_id}, count=500)
        for _, entries in reply or []:
            if entries:
                last_id = entries[-1][0]
                self.private_last_id = text_of(last_id)
            if connect_markers(entries):
                self.request_reconcile("private-reconnect")

    async def market(self) -> None:
        await self.trader.feed.read()

    async def claim(self) -> None:
        await self.trader.claim(min_idle_ms=self.trader.lease.lease_ms)

    async def instruments(self) -> None:
        instruments = self.trader.instruments
        if instruments.due(self.trader.clock()):
            await instruments.load()

    async def mark(self) -> None:
        trader = self.trader
        symbols = set(trader.settings.symbols)
        prices: dict[str, Decimal] = {
            s: p for s, p in trader.market.last_trades().items() if s in symbols
        }
        if prices:
            await trader.ledger.mark(prices)


async def first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; if one fails, cancel the others and raise its error.

    A cancellation can be lost inside a client library (turned into a connection error that a
    loop survives), so the tasks still running are cancelled again until they end. A caller
    that is itself cancelled again meanwhile (nested uses do that) does not cut this short: no
    task is left running behind it.
    """
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        cancelled = False
        pending = {t for t in tasks if not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            try:
                _, pending = await asyncio.wait(pending, timeout=0.5)
            except asyncio.CancelledError:
                cancelled = True
                pending = {t for t in pending if not t.done()}
        await asyncio.gather(*tasks, return_exceptions=True)
        if cancelled:
            raise asyncio.CancelledError


def background_tasks(
    trader: Trader,
    stop: asyncio.Event,
    *,
    guard_interval_s: float = 0.25,
    unresolved_every_s: float = 30.0,
    kill_switch_every_s: float = KILL_SWITCH_EVERY_S,
) -> list[asyncio.Task[None]]:
    """Start the trader's background loops; each ends when ``stop`` is set."""
    bg = _Background(trader, stop, unresolved_every_s=unresolved_every_s)

    def outage(reason: str) -> None:
        trader.redis_outage(reason)

    loops: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
        ("kill switch", kill_switch_every_s, bg.kill_switch),
        ("guard", guard_interval_s, bg.guard),
        ("watch", 0.25, bg.watch),
        ("market", MARKET_EVERY_S, bg.market),
        ("mark", 1.0, bg.mark),
        ("claim", trader.lease.lease_ms / 1000, bg.claim),
        ("instruments", 60.0, bg.instruments),
    ]
    tasks = [
        asyncio.create_task(
            _loop(name, stop, every_s, step, outage), name=f"trader-{name.replace(' ', '-')}"
        )
        for name, every_s, step in loops
    ]
    return [*tasks, asyncio.create_task(bg.reconcile(), name="trader-reconcile")]
