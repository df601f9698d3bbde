"""Run the trader: one owner per venue account, standbys waiting, orders placed by the owner.

A trader process first stands by: it tries to take the account's lease (``SET NX PX``,
:mod:`trader.lease`) every fifth of a lease period, publishing its health as ``standby``
under ``<instance>.standby``. Once it holds the lease it owns the account for a *term*
(:class:`trader.owner.Trader`): it reads positions, working orders, the kill switch and the
market from Redis, claims what the previous owner left pending, reconciles with the venue, and
trades, publishing ``ok`` under ``<instance>``. Every write of a term is fenced by the lease; a
renewal or a write that finds the lease taken ends the term, and the process stands by again.
A dead or frozen owner is thus replaced within two lease periods
(``TICKPIPE_TRADER_LEASE_MS``, default 5000), and an owner that thaws after losing its lease
sends nothing and writes nothing.

On stop, the owner finishes the orders in flight, then releases the lease so a standby takes
over at once. Background tasks of a term are in :mod:`trader.tasks`. Redis unreachable or
refusing commands (``OOM`` at maxmemory, ``BUSY``...) pauses a loop, never the process: a signal
whose intent Redis refused stays pending and no order leaves for it; each loop logs the outage
rate-limited with the server's text (:mod:`common.backpressure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.backoff import Backoff
from tickpipe.common.backpressure import RedisOutage
from tickpipe.common.errors import AuthError, RedisUnavailable, VenueUnavailable
from tickpipe.common.health import HealthReporter
from tickpipe.common.names import Keys
from tickpipe.common.redis_io import REDIS_ERRORS, connect_redis, redis_errors
from tickpipe.common.settings import Settings
from tickpipe.common.stopping import wait_stop
from tickpipe.common.tls import trust_ca_file
from tickpipe.trader.fence import LeaseLost
from tickpipe.trader.lease import Lease, new_token
from tickpipe.trader.market import MarketView
from tickpipe.trader.owner import COUNTERS, MAX_INFLIGHT, Trader, default_limits
from tickpipe.trader.risk import RiskLimits
from tickpipe.trader.tasks import KILL_SWITCH_EVERY_S, background_tasks, first_failure, keep_lease
from tickpipe.venues.registry import venue as venue_of

__all__ = ["MAX_INFLIGHT", "SERVICE", "Trader", "TraderHealth", "default_limits", "run"]

SERVICE = "trader"
log = logging.getLogger("tickpipe.trader")


class TraderHealth(HealthReporter):
    """Publish ``ok`` under ``<instance>`` while owning the account, else ``standby``.

    Two traders may share an instance name (the documented failover), so the standby publishes
    under ``<instance>.standby``. A switch removes the other key if it still holds this trader's
    own record (``token``): never another trader's.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        instance: str,
        *,
        token: str,
        owner: Callable[[], bool],
        interval_s: float,
        stats: Callable[[], dict[str, Any]],
    ) -> None:
        super().__init__(redis, keys, SERVICE, instance, interval_s=interval_s, stats=stats)
        self.token = token
        self.owner = owner
        self.owner_key = keys.health(SERVICE, instance)
        self.standby_key = keys.health(SERVICE, f"{instance}.standby")
        self.status = "standby"
        self.key = self.standby_key

    async def publish(self) -> None:
        owner = self.owner()
        self.status = "ok" if owner else "standby"
        key = self.owner_key if owner else self.standby_key
        if key != self.key:
            old, self.key = self.key, key
            try:
                raw = await self.redis.get(old)
                if raw and orjson.loads(raw).get("lease") == self.token:
                    await self.redis.delete(old)
            except REDIS_ERRORS as exc:
                log.debug("old health key not removed: %s", exc)
        await super().publish()


class _Process:
    """What outlives a term: counters, alarms, the market view, the current term."""

    def __init__(self, lease: Lease, venue: Any = None) -> None:
        self.lease = lease
        self.venue = venue  # the order connection: its venue clock figures go into health
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.alarms: list[str] = []
        self.market = MarketView()
        self.term: Trader | None = None

    def owner(self) -> bool:
        return self.term is not None and self.lease.fresh()

    def stats(self) -> dict[str, Any]:
        stats = self.term.stats() if self.term is not None else {**self.counts}
        refused = self.lease.fence.link.scripts_refused  # the trader's one seam to Redis
        clock = getattr(self.venue, "clock_figures", None)
        return {
            **stats,
            **(clock() if callable(clock) else {}),
            "scripts_refused": refused,
            "lease": self.lease.token,
            "alarms": list(self.alarms),
        }


async def _stand_by(lease: Lease, stop: asyncio.Event) -> bool:
    """Try to take the lease until it is taken (True) or ``stop`` is set (False)."""
    backoff = Backoff(base_s=0.1, cap_s=5.0)
    waiting_logged = False
    with RedisOutage(log, "trader standing by") as outage:
        while not stop.is_set():
            try:
                async with redis_errors():
                    if await lease.acquire():
                        outage.recovered()
                        return True
                backoff.attempt = 0
                outage.recovered()
                if not waiting_logged:
                    log.info("standing by: another trader owns the account")
                    waiting_logged = True
                delay = lease.retry_s
            except RedisUnavailable as exc:
                outage.failed(exc)
                delay = backoff.next_delay_s()
            await wait_stop(stop, delay)
    return False


async def _own(trader: Trader, stop: asyncio.Event, starting: RedisOutage, **tasks_kw: Any) -> None:
    """Run one term until ``stop`` (then return) or until the lease is lost (LeaseLost)."""
    async with redis_errors():
        await trader.prepare()
    starting.recovered()
    done = asyncio.Event()

    async def work() -> None:
        try:
            await first_failure(
                [
                    asyncio.create_task(trader.consume_signals(stop), name="trader-signals"),
                    asyncio.create_task(trader.consume_updates(stop), name="trader-updates"),
                    *background_tasks(trader, stop, **tasks_kw),
                ]
            )
        finally:
            done.set()

    await first_failure(
        [
            asyncio.create_task(work(), name="trader-work"),
            asyncio.create_task(keep_lease(trader, done), name="trader-lease"),
        ]
    )


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    venue: Any = None,  # the order connection; None: the venue description opens it
    limits: RiskLimits | None = None,
    status_attempts: int = 8,
    retry_base_s: float = 0.2,
    recv_window_ms: int = 5000,
    guard_interval_s: float = 0.25,
    unresolved_every_s: float = 30.0,
    kill_switch_every_s: float = KILL_SWITCH_EVERY_S,
    max_inflight: int | None = None,
    monotonic: Callable[[], float] | None = None,
) -> None:
    """Stand by, own the account, trade, until ``stop`` is set; every dependency can be injected.

    The venue's description (:func:`venues.registry.venue`) opens the order connection (Binance's
    WebSocket API, Alpaca's REST API; an injected ``venue`` replaces it) and says what a refused
    key means (Alpaca: a ConfigError that stops the stage).
    ``monotonic`` is the clock the lease's freshness is measured with.
    """
    trust_ca_file(settings.ca_file)
    spec = venue_of(settings.venue)
    own_redis, own_venue = redis is None, venue is None
    link = spec.order_link(settings)  # checks the credentials
    signer, session = link.signer, link.session
    venue = venue if venue is not None else link.open()
    redis = redis if redis is not None else connect_redis(settings.redis_url)
    lease = Lease(
        redis,
        settings.keys,
        settings.venue,
        settings.partitions(),
        token=new_token(settings.instance),
        lease_ms=settings.trader_lease_ms,
        monotonic=monotonic or time.monotonic,
    )
    process = _Process(lease, venue)
    health = TraderHealth(
        redis,
        settings.keys,
        settings.instance,
        token=lease.token,
        owner=process.owner,
        interval_s=settings.health_interval_s,
        stats=process.stats,
    )
    health_stop = asyncio.Event()
    health_task = asyncio.create_task(health.run(health_stop), name="trader-health")
    starting = RedisOutage(log, "trader starting a term")
    start_backoff = Backoff(base_s=0.1, cap_s=5.0)
    tasks_kw = {
        "guard_interval_s": guard_interval_s,
        "unresolved_every_s": unresolved_every_s,
        "kill_switch_every_s": kill_switch_every_s,
    }
    try:
        try:  # connect up front, so the first order does not pay for the handshake
            await spec.connect_orders(venue)
        except VenueUnavailable as exc:
            log.warning("venue not reachable yet; will retry per order", extra={"error": str(exc)})
        log.info("trader running", extra={"lease": lease.token})
        while await _stand_by(lease, stop):
            trader = Trader(
                settings,
                redis,
                venue,
                clock=clock or time.time_ns,
                limits=limits if limits is not None else default_limits(settings),
                lease=lease,
                market=process.market,
                counts=process.counts,
                alarms=process.alarms,
                status_attempts=status_attempts,
                retry_base_s=retry_base_s,
                recv_window_ms=recv_window_ms,
                signer=signer,
                session=session,
                max_inflight=max_inflight or settings.max_orders_in_flight,
            )
            process.term = trader
            try:
                await _own(trader, stop, starting, **tasks_kw)
                start_backoff.attempt = 0
            except LeaseLost as exc:
                start_backoff.attempt = 0
                process.counts["leases_lost"] += 1
                log.warning("lease lost; standing by", extra={"error": str(exc)})
            except RedisUnavailable as exc:  # refused or lost while the term was starting:
                starting.failed(exc)  # wait a little, then take the lease again
                await wait_stop(stop, start_backoff.next_delay_s())
            finally:
                process.term = None
                await trader.ledger.intents.close()
        with contextlib.suppress(*REDIS_ERRORS):  # not released: it expires by itself
            async with redis_errors():
                await lease.release()
    except AuthError as exc:
        if spec.refused_key is None:
            raise
        raise spec.refused_key(exc) from exc
    finally:
        starting.forget()
        health_stop.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await health_task
        if own_venue:
            await venue.aclose()
        if own_redis:
            await redis.aclose()
        log.info("trader stopped", extra=process.counts)
