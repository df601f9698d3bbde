"""Run the trader's background work: kill switch and limits, reconciliation, marks to market.

* **kill switch** — reads ``{V}:kill-switch`` into memory every ``kill_switch_every_s``
  (default 0.1 s), so the per-signal risk check needs no round trip: a kill switch set now
  refuses new orders within that period (plus one Redis round trip).
* **guard** — every interval: while the kill switch is on every working order is cancelled;
  otherwise working orders that would grow a position past its limit are cancelled.
* **reconcile** — compares the working orders with the venue at start, after every connect marker
  the ingestor writes into ``{V}:private-raw`` (a private-stream reconnect, so order updates may
  have been missed), after every reconnect of the trader's own WebSocket API connection, and
  every 30 s while an order's outcome is still unknown.
* **mark** — reads the last trade price of each symbol from its partition's trades stream and
  writes each position's unrealised profit.

Each loop survives Redis outages (it waits and goes on) and ends when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from common.backoff import Backoff
from common.errors import DecodeError, RedisUnavailable
from common.redis_io import redis_errors
from common.schema import RawFrame, decode_fields
from trader.binance_ws_api import VenueUnavailable
from trader.risk import to_decimal

if TYPE_CHECKING:
    from trader.shell import Trader

__all__ = ["KILL_SWITCH_EVERY_S", "background_tasks", "connect_markers", "first_failure"]

log = logging.getLogger("tickpipe.trader")

#: How often the kill switch is read into memory: the longest a set kill switch can go unseen.
KILL_SWITCH_EVERY_S = 0.1


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _loop(
    name: str, stop: asyncio.Event, interval_s: float, step: Callable[[], Awaitable[None]]
) -> None:
    """Call ``step`` every ``interval_s`` until ``stop``; wait out Redis and venue outages."""
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    while not stop.is_set():
        try:
            async with redis_errors():
                await step()
            backoff.attempt = 0
            await _wait(stop, interval_s)
        except (RedisUnavailable, VenueUnavailable) as exc:
            log.warning("%s: waiting for an outage to end", name, extra={"error": str(exc)})
            await _wait(stop, backoff.next_delay_s())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect_markers(entries: Any) -> list[str]:
    """Return the connection ids of the ``connect`` markers among raw stream entries."""
    out = []
    for _, fields in entries or []:
        try:
            frame = RawFrame.from_fields(fields)
        except DecodeError:
            continue
        if frame.kind != "marker":
            continue
        try:
            data = orjson.loads(frame.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("event") == "connect":
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

    def _unresolved(self) -> bool:
        """Whether a working order has no venue answer yet (its outcome is unknown)."""
        inflight = self.trader.router.inflight
        return any(
            not o.order_id and o.client_order_id not in inflight
            for o in self.trader.ledger.tracker.working()
        )

    def request_reconcile(self, reason: str) -> None:
        self.reasons.append(reason)
        self.wanted.set()

    async def kill_switch(self) -> None:
        await self.trader.refresh_kill_switch()

    async def guard(self) -> None:
        await self.trader.cancel_breaches()

    async def reconcile(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.unresolved_every_s):
                    await self._wait_wanted()
            if self.stop.is_set():
                return
            if not self.wanted.is_set():  # nothing asked for: settle what is still unknown
                if not self._unresolved():
                    continue
                self.request_reconcile("unresolved")
            self.wanted.clear()
            reason = ",".join(dict.fromkeys(self.reasons)) or "requested"
            self.reasons = []
            try:
                async with redis_errors():
                    await self.trader.router.reconcile(reason=reason)
            except (RedisUnavailable, VenueUnavailable) as exc:
                log.warning("reconcile postponed", extra={"error": str(exc)})
                self.request_reconcile(reason)
                await _wait(self.stop, 1.0)

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
            self.private_last_id = _text(last[0][0]) if last else "0-0"
        reply: Any = await trader.redis.xread({stream: self.private_last_id}, count=500)
        for _, entries in reply or []:
            if entries:
                last_id = entries[-1][0]
                self.private_last_id = _text(last_id)
            if connect_markers(entries):
                self.request_reconcile("private-reconnect")

    async def mark(self) -> None:
        trader = self.trader
        prices: dict[str, Decimal] = {}
        symbols = set(trader.settings.symbols)
        for partition in trader.settings.partitions():
            entries: Any = await trader.redis.xrevrange(trader.keys.trades(partition), count=200)
            for _, fields in entries or []:
                data = decode_fields(fields)
                symbol = data.get("symbol", "")
                price = to_decimal(data.get("price"))
                if symbol in symbols and symbol not in prices and price is not None:
                    prices[symbol] = price
        if prices:
            await trader.ledger.mark(prices)


async def first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; if one fails, cancel the others and raise its error.

    A cancellation can be lost inside a client library (turned into a connection error that a
    loop survives), so the tasks still running are cancelled again until they end.
    """
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        pending = {t for t in tasks if not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        await asyncio.gather(*tasks, return_exceptions=True)


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
    return [
        asyncio.create_task(
            _loop("kill switch", stop, kill_switch_every_s, bg.kill_switch),
            name="trader-kill-switch",
        ),
        asyncio.create_task(_loop("guard", stop, guard_interval_s, bg.guard), name="trader-guard"),
        asyncio.create_task(bg.reconcile(), name="trader-reconcile"),
        asyncio.create_task(_loop("watch", stop, 0.25, bg.watch), name="trader-watch"),
        asyncio.create_task(_loop("mark", stop, 1.0, bg.mark), name="trader-mark"),
    ]
