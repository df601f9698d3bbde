"""Run the trader: signals in, at most one venue order per signal, order life and positions out.

Per signal: risk check, then the intent is recorded (``SET NX`` on its idempotency key plus an
``intent`` entry in ``{V}:orders``, in one transaction) *before* anything is sent. If the key
already exists the order may have been sent by an earlier run: it is never sent again, only looked
up with ``order.status``. An ambiguous answer (timeout, lost connection, 5xx) is also resolved by
``order.status``. The signal is acknowledged only once its outcome is in ``{V}:orders``.

Order updates (written by the processor) move each order through the state machine of
:class:`trader.core.OrderTracker`; the order's state lives in its intent key and the positions in
``{V}:positions``, written together with the ``update`` record and the XACK in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from common.backoff import Backoff
from common.binance import MS
from common.errors import (
    AmbiguousOutcome,
    AuthError,
    ConfigError,
    DecodeError,
    RateLimited,
    RedisUnavailable,
)
from common.health import HealthReporter
from common.names import GROUP_TRADER
from common.redis_io import connect_redis, ensure_group, redis_errors
from common.schema import OrderIntent, Signal
from common.settings import Settings
from trader.binance_ws_api import BinanceWsApi, Venue, VenueUnavailable
from trader.core import (
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RiskLimits,
    build_intent,
    check_signal,
    place_params,
    result_of,
    status_params,
)
from trader.ledger import Ledger

__all__ = ["SERVICE", "Trader", "default_limits", "run"]

SERVICE = "trader"
log = logging.getLogger("tickpipe.trader")

COUNTERS = (
    "signals_seen",
    "bad_signals",
    "orders_sent",
    "acks",
    "rejects",
    "ambiguous",
    "unresolved",
    "updates",
    "foreign_updates",
    "rate_limited",
)


def default_limits(settings: Settings) -> RiskLimits:
    """Refuse orders over ten times the configured order size or for unconfigured symbols."""
    return RiskLimits(
        max_order_qty=Decimal(settings.order_qty) * 10, symbols=frozenset(settings.symbols)
    )


class Trader:
    """Route signals to the venue and follow the orders; one instance per running stage."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        venue: Venue,
        *,
        clock: Callable[[], int],
        limits: RiskLimits,
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        idle_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.venue_name = settings.venue
        self.redis = redis
        self.venue = venue
        self.clock = clock
        self.limits = limits
        self.status_attempts = status_attempts
        self.retry_base_s = retry_base_s
        self.idle_s = idle_s
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.ledger = Ledger(redis, self.keys, self.venue_name, clock=clock, counts=self.counts)
        self.last_order_latency_ms: float | None = None

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "last_order_latency_ms": self.last_order_latency_ms,
            "positions": self.ledger.positions(),
        }

    # -- set-up ---------------------------------------------------------------------------------
    def signal_streams(self) -> list[str]:
        return [self.keys.signals(p) for p in self.settings.partitions()]

    async def prepare(self) -> None:
        """Create the consumer groups and load the positions."""
        for stream in [*self.signal_streams(), self.keys.order_updates(self.venue_name)]:
            await ensure_group(self.redis, stream, GROUP_TRADER)
        await self.ledger.load_positions()

    # -- consuming ------------------------------------------------------------------------------
    async def consume(
        self,
        streams: list[str],
        handle: Callable[[str, str, dict[bytes, bytes]], Coroutine[Any, Any, None]],
        stop: asyncio.Event,
        *,
        count: int,
    ) -> None:
        """Handle this consumer's pending entries, then new ones, until ``stop`` is set."""
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        cursors = dict.fromkeys(streams, "0")
        while not stop.is_set():
            try:
                await self._consume_once(cursors, handle, stop, count)
            except RedisUnavailable as exc:
                log.warning("Redis unavailable, retrying", extra={"error": str(exc)})
                cursors = dict.fromkeys(streams, "0")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next_delay_s())

    async def _consume_once(
        self,
        cursors: dict[str, str],
        handle: Callable[[str, str, dict[bytes, bytes]], Coroutine[Any, Any, None]],
        stop: asyncio.Event,
        count: int,
    ) -> None:
        idle = all(c == ">" for c in cursors.values())
        started = time.monotonic()
        async with redis_errors():
            reply: Any = await self.redis.xreadgroup(
                GROUP_TRADER,
                self.settings.instance,
                cursors,  # type: ignore[arg-type]
                count=count,
                block=int(self.idle_s * 1000) if idle else None,
            )
        got = 0
        # RESP2 reply: [(stream, [(entry id, fields, or None if trimmed while pending), ...]), ...]
        for raw_stream, entries in reply or []:
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else str(raw_stream)
            if not entries and cursors[stream] != ">":
                cursors[stream] = ">"  # pending entries done
            for raw_id, fields in entries:
                if stop.is_set():
                    return
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                got += 1
                if cursors[stream] != ">":
                    cursors[stream] = entry_id
                if not fields:  # trimmed while pending: nothing to do
                    await self.redis.xack(stream, GROUP_TRADER, entry_id)
                    continue
                async with redis_errors():
                    await handle(stream, entry_id, fields)
        waited = time.monotonic() - started
        if not got and idle and waited < self.idle_s / 2:  # a client that does not block
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.idle_s - waited)

    # -- signals --------------------------------------------------------------------------------
    async def handle_signal(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Turn one signal into at most one order and record the outcome, then XACK it."""
        self.counts["signals_seen"] += 1
        try:
            signal = Signal.from_fields(fields)
        except DecodeError as exc:
            self.counts["bad_signals"] += 1
            log.warning("bad signal skipped", extra={"entry_id": entry_id, "error": str(exc)})
            await self.redis.xack(stream, GROUP_TRADER, entry_id)
            return
        intent = build_intent(signal, ts_intent=self.clock())
        reason = check_signal(signal, self.limits)
        if reason is not None:
            await self.ledger.record(intent, "rejected", {"reason": reason, "stage": "risk"})
        else:
            stored = await self.ledger.record_intent(intent)
            if stored is None:
                await self.send(signal, intent)
            else:
                log.info(
                    "intent exists: resolving, never resending",
                    extra={"client_order_id": intent.client_order_id},
                )
                await self.resolve(stored, source="restart")
        await self.redis.xack(stream, GROUP_TRADER, entry_id)

    def _params(self, intent: OrderIntent, *, place: bool) -> dict[str, Any]:
        key = self.settings.binance_api_key.reveal()
        secret = self.settings.binance_api_secret.reveal()
        now_ms = self.clock() // MS
        if place:
            return place_params(intent, api_key=key, api_secret=secret, timestamp_ms=now_ms)
        return status_params(
            intent.symbol,
            intent.client_order_id,
            api_key=key,
            api_secret=secret,
            timestamp_ms=now_ms,
        )

    async def send(self, signal: Signal, intent: OrderIntent) -> None:
        """Send ``order.place`` once; resolve anything ambiguous by ``order.status``."""
        backoff = Backoff(base_s=self.retry_base_s, cap_s=5.0)
        while True:
            params = self._params(intent, place=True)
            sent_ns = self.clock()
            try:
                response = await self.venue.place(params)
                result = result_of(response, now_ms=self.clock() // MS)
            except VenueUnavailable as exc:  # certainly not sent: try again
                log.warning("venue unavailable", extra={"error": str(exc)})
                await asyncio.sleep(backoff.next_delay_s())
                continue
            except RateLimited as exc:  # the venue refused the request: no order, try again
                self.counts["rate_limited"] += 1
                await asyncio.sleep(min(max(exc.retry_after_s, backoff.next_delay_s()), 60.0))
                continue
            except AuthError as exc:
                await self.ledger.record(intent, "rejected", {"reason": str(exc), "stage": "venue"})
                raise
            except (AmbiguousOutcome, DuplicateOrder) as exc:
                self._count_sent(signal, sent_ns)
                self.counts["ambiguous"] += isinstance(exc, AmbiguousOutcome)
                log.warning(
                    "order outcome unknown, querying",
                    extra={"client_order_id": intent.client_order_id, "error": str(exc)},
                )
                await self.resolve(intent, source="ambiguous")
                return
            except (OrderRejected, OrderNotFound) as exc:
                self._count_sent(signal, sent_ns)
                await self.ledger.record(
                    intent,
                    "rejected",
                    {"reason": str(exc), "stage": "venue", "code": str(exc.code or "")},
                )
                return
            self._count_sent(signal, sent_ns)
            await self.ledger.record_result(intent, result, source="place")
            return

    def _count_sent(self, signal: Signal, sent_ns: int) -> None:
        self.counts["orders_sent"] += 1
        self.last_order_latency_ms = round((sent_ns - signal.ts_event) / MS, 3)

    async def resolve(self, intent: OrderIntent, *, source: str) -> None:
        """Look the order up until the venue says what happened; never send it again.

        After a restart one "does not exist" answer settles it (the earlier run's connection is
        gone, so nothing is in flight); after an ambiguous send the venue may still be working on
        the request, so it is asked ``status_attempts`` times before the order is given up.
        """
        backoff = Backoff(base_s=self.retry_base_s, cap_s=2.0)
        event, last = "unknown", "no answer"
        for _ in range(self.status_attempts):
            try:
                response = await self.venue.status(self._params(intent, place=False))
                result = result_of(response, now_ms=self.clock() // MS)
            except OrderNotFound as exc:
                event, last = "not_found", f"the venue has no such order: {exc}"
                if source == "restart":
                    break
            except (AmbiguousOutcome, VenueUnavailable, OrderRejected, DuplicateOrder) as exc:
                event, last = "unknown", str(exc)
            except RateLimited as exc:
                event, last = "unknown", str(exc)
                await asyncio.sleep(min(exc.retry_after_s, 60.0))
            else:
                await self.ledger.record_result(intent, result, source=f"status:{source}")
                return
            await asyncio.sleep(backoff.next_delay_s())
        self.counts["unresolved"] += event == "unknown"
        await self.ledger.record(intent, event, {"reason": last, "source": source})


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for every task; if one fails, cancel the others and raise its error."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    venue: Venue | None = None,
    limits: RiskLimits | None = None,
    status_attempts: int = 8,
    retry_base_s: float = 0.2,
) -> None:
    """Trade until ``stop`` is set; every dependency can be injected by tests."""
    if not settings.binance_api_key or not settings.binance_api_secret:
        raise ConfigError(
            "the trader needs API credentials: set BINANCE_API_KEY and BINANCE_API_SECRET"
        )
    own_redis, own_venue = redis is None, venue is None
    redis = redis if redis is not None else connect_redis(settings.redis_url)
    venue = venue if venue is not None else BinanceWsApi(settings.binance_ws_api_url)
    trader = Trader(
        settings,
        redis,
        venue,
        clock=clock or time.time_ns,
        limits=limits if limits is not None else default_limits(settings),
        status_attempts=status_attempts,
        retry_base_s=retry_base_s,
    )
    health = HealthReporter(
        redis,
        settings.keys,
        SERVICE,
        settings.instance,
        interval_s=settings.health_interval_s,
        stats=trader.stats,
    )
    health_stop = asyncio.Event()
    health_task: asyncio.Task[None] | None = None
    try:
        async with redis_errors():
            await trader.prepare()
        if isinstance(venue, BinanceWsApi):
            try:  # connect up front, so the first order does not pay for the handshake
                await venue.connect()
            except VenueUnavailable as exc:
                log.warning(
                    "venue not reachable yet; will retry per order", extra={"error": str(exc)}
                )
        health.status = "ok"
        health_task = asyncio.create_task(health.run(health_stop), name="trader-health")
        log.info("trader running", extra={"streams": trader.signal_streams()})
        updates = [settings.keys.order_updates(settings.venue)]
        await _first_failure(
            [
                asyncio.create_task(
                    trader.consume(trader.signal_streams(), trader.handle_signal, stop, count=16),
                    name="trader-signals",
                ),
                asyncio.create_task(
                    trader.consume(
                        updates, trader.ledger.record_update, stop, count=settings.batch_size
                    ),
                    name="trader-updates",
                ),
            ]
        )
    finally:
        health_stop.set()
        if health_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await health_task
        if own_venue:
            await venue.aclose()
        if own_redis:
            await redis.aclose()
        log.info("trader stopped", extra=trader.counts)
