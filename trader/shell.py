"""Run the trader: signals in, at most one venue order per signal, order life and positions out.

Per ``place`` signal: the risk limits are checked from memory (kill switch, symbols, order size,
position, notional, order rate), the intent is recorded (``SET NX`` on its idempotency key, an
``intent`` entry in ``{V}:orders`` and the working-orders membership, in one Lua script: one round
trip) *before* anything is sent, and the order goes out (:mod:`trader.router` for Binance's
WebSocket API, :mod:`trader.alpaca_router` for Alpaca's REST API when ``settings.venue`` is
``alpaca``). If the intent already exists (an earlier run may have sent it) the order is only
looked up, never sent again. A ``cancel`` signal cancels the symbol's working orders. The signal is
acknowledged only once its outcome is in ``{V}:orders``.

Orders are pipelined: once a signal's intent is recorded and its order written to the venue, the
next signal is handled without waiting for the venue's answer. At most
``TICKPIPE_MAX_ORDERS_IN_FLIGHT`` (default 32) orders await theirs; each is followed, recorded and
acknowledged on its own. An order in flight counts in the risk limits from the moment its intent
is recorded. A ``cancel`` signal first waits for the answers of its symbol's orders in flight, so
it cancels them too. On stop, no new order leaves and the ones in flight are followed to the end.

The kill switch is read into memory at start and then every ``kill_switch_every_s`` (0.1 s) by a
background task: a kill switch set now refuses every signal handled after the next refresh, so
at most that period (plus one Redis round trip) after it is set, and working orders are cancelled
by the guard within ``guard_interval_s`` after that.

Order updates (written by the processor) move each order through the state machine of
:class:`trader.orders.OrderTracker`; the order's state lives in its intent key and the positions in
``{V}:positions``, written together with the ``update`` record and the XACK in one transaction.
Background tasks (:mod:`trader.tasks`) watch the kill switch and the position limits, reconcile with
the venue at start and after every private-stream or WebSocket API reconnect, and mark positions to
the last trade price.
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
from common.errors import AuthError, ConfigError, DecodeError, RedisUnavailable
from common.health import HealthReporter
from common.names import GROUP_TRADER
from common.redis_io import connect_redis, ensure_group, redis_errors, xreadgroup_streams
from common.schema import OrderIntent, Signal
from common.settings import Settings
from trader.alpaca_rest import AlpacaRest, rest_from_settings
from trader.alpaca_router import AlpacaRouter
from trader.binance_ws_api import BinanceWsApi, Venue, VenueUnavailable
from trader.control import kill_switch_on
from trader.core import build_intent, logon_params
from trader.ledger import Ledger
from trader.risk import RiskLimits, TokenBucket, breach_cancels, check_signal, to_decimal
from trader.router import Router
from trader.signing import Signer, load_signer
from trader.tasks import KILL_SWITCH_EVERY_S, background_tasks, first_failure
from trader.venue_router import Request, VenueRouter

__all__ = ["MAX_INFLIGHT", "SERVICE", "Trader", "default_limits", "run"]

SERVICE = "trader"
log = logging.getLogger("tickpipe.trader")

COUNTERS = tuple(
    "signals_seen bad_signals orders_sent acks rejects ambiguous unresolved updates "
    "foreign_updates rate_limited cancel_signals cancels_sent cancels reconciles "
    "discrepancies".split()
)

Handler = Callable[[str, str, dict[bytes, bytes]], Coroutine[Any, Any, None]]
#: Orders that may await the venue's answer at once (the next signal waits for a free slot);
#: ``TICKPIPE_MAX_ORDERS_IN_FLIGHT`` sets it for the stage.
MAX_INFLIGHT = 32


def default_limits(settings: Settings) -> RiskLimits:
    """Build the limits from settings: position, notional, ten times the order size, symbols."""
    return RiskLimits(
        max_order_qty=Decimal(settings.order_qty) * 10,
        max_position=Decimal(settings.max_position),
        max_notional=Decimal(settings.max_notional),
        symbols=frozenset(settings.symbols),
    )


class Trader:
    """Route signals to the venue and follow the orders; one instance per running stage."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        venue: Venue | AlpacaRest,
        *,
        clock: Callable[[], int],
        limits: RiskLimits,
        status_attempts: int = 8,
        retry_base_s: float = 0.2,
        recv_window_ms: int = 5000,
        idle_s: float = 0.2,
        signer: Signer | None = None,
        session: bool = False,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.venue_name = settings.venue
        self.redis = redis
        self.venue = venue
        self.clock = clock
        self.limits = limits
        self.idle_s = idle_s
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.bucket = TokenBucket(settings.max_orders_per_s)
        self.ledger = Ledger(redis, self.keys, self.venue_name, clock=clock, counts=self.counts)
        shared: dict[str, Any] = {
            "clock": clock,
            "counts": self.counts,
            "status_attempts": status_attempts,
            "retry_base_s": retry_base_s,
            "recv_window_ms": recv_window_ms,
        }
        self.router: VenueRouter
        if isinstance(venue, AlpacaRest):  # Alpaca's REST API
            self.router = AlpacaRouter(settings, venue, self.ledger, **shared)
        else:  # Binance's WebSocket API
            self.router = Router(
                settings, venue, self.ledger, signer=signer, session=session, **shared
            )
        self.kill_switch = False
        self.slots = asyncio.Semaphore(max_inflight)
        # (signal stream, entry id) -> (symbol, task): ids repeat across the partitions' streams
        self.sends: dict[tuple[str, str], tuple[str, asyncio.Task[None]]] = {}
        self.send_failure: BaseException | None = None
        self.reread_signals = False
        self.stopping = asyncio.Event()  # consume_signals' stop

    @property
    def last_order_latency_ms(self) -> float | None:
        return self.router.last_order_latency_ms

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "last_order_latency_ms": self.last_order_latency_ms,
            "positions": self.ledger.positions(),
            "pnl": self.ledger.tracker.book.summary(),
            "working_orders": len(self.ledger.tracker.working()),
            "orders_in_flight": len(self.sends),
            "kill_switch": self.kill_switch,
        }

    # -- set-up ---------------------------------------------------------------------------------
    def signal_streams(self) -> list[str]:
        return [self.keys.signals(p) for p in self.settings.partitions()]

    async def prepare(self) -> None:
        """Create the consumer groups, load the positions and working orders and the kill switch."""
        for stream in [*self.signal_streams(), self.keys.order_updates(self.venue_name)]:
            await ensure_group(self.redis, stream, GROUP_TRADER)
        await self.ledger.load()
        await self.ledger.intents.load_script()
        await self.refresh_kill_switch()

    # -- consuming ------------------------------------------------------------------------------
    async def consume(
        self,
        streams: list[str],
        handle: Handler,
        stop: asyncio.Event,
        *,
        count: int,
        reread: Callable[[], bool] | None = None,
    ) -> None:
        """Handle this consumer's pending entries, then new ones, until ``stop`` is set.

        ``reread`` is asked before each read: ``True`` goes back to this consumer's pending
        entries, as after a Redis outage.
        """
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        cursors = dict.fromkeys(streams, "0")
        while not stop.is_set():
            if self.send_failure is not None:  # an order's follow-up failed: the stage stops
                raise self.send_failure
            if reread is not None and reread():
                cursors = dict.fromkeys(streams, "0")
            try:
                await self._consume_once(cursors, handle, stop, count)
            except RedisUnavailable as exc:
                log.warning("Redis unavailable, retrying", extra={"error": str(exc)})
                cursors = dict.fromkeys(streams, "0")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next_delay_s())

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
                async with redis_errors():
                    if not fields:  # trimmed while pending: nothing to do
                        await self.redis.xack(stream, GROUP_TRADER, entry_id)
                        continue
                    await handle(stream, entry_id, fields)
        waited = time.monotonic() - started
        if not got and idle and waited < self.idle_s / 2:  # a client that does not block
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.idle_s - waited)

    # -- signals --------------------------------------------------------------------------------
    async def consume_signals(self, stop: asyncio.Event) -> None:
        """Pipeline the signals until ``stop`` is set, then wait for the orders in flight."""
        self.stopping = stop
        try:
            await self.consume(
                self.signal_streams(), self.dispatch_signal, stop, count=16, reread=self._reread
            )
        finally:
            try:
                await self.settle_sends()
            except asyncio.CancelledError:  # the stage is being torn down: do not leave them
                tasks = [t for _, t in self.sends.values()]
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks)
                raise

    async def dispatch_signal(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Handle one signal up to its order leaving; follow the answer in a task of its own."""
        if (stream, entry_id) in self.sends:  # read again while its order is in flight
            return
        signal = await self._decode(stream, entry_id, fields)
        if signal is None:
            return
        if signal.action == "cancel":
            await self.settle_sends(signal.symbol)  # so their orders are cancelled too
            await self.cancel_symbol(signal)
            await self.redis.xack(stream, GROUP_TRADER, entry_id)
            return
        await self.slots.acquire()
        if self.stopping.is_set():  # stopped while waiting for a slot: left for the next run
            self.slots.release()
            return
        try:
            follow = await self.start_place(signal)
        except BaseException:
            self.slots.release()
            raise
        task = asyncio.create_task(self._follow(stream, entry_id, follow))
        self.sends[(stream, entry_id)] = (signal.symbol, task)

    async def _follow(
        self, stream: str, entry_id: str, follow: Coroutine[Any, Any, None] | None
    ) -> None:
        try:
            async with redis_errors():
                if follow is not None:
                    await follow
                await self.redis.xack(stream, GROUP_TRADER, entry_id)
        except RedisUnavailable as exc:  # the signal stays pending; the consumer reads it again
            log.warning("Redis unavailable after an order left", extra={"error": str(exc)})
            self.reread_signals = True
        except Exception as exc:  # the consumer raises it: the stage stops
            self.send_failure = exc
        finally:
            self.sends.pop((stream, entry_id), None)
            self.slots.release()

    def _reread(self) -> bool:
        """Tell (once) that a pipelined order met Redis trouble: its signal is still pending."""
        wanted, self.reread_signals = self.reread_signals, False
        return wanted

    async def settle_sends(self, symbol: str | None = None) -> None:
        """Wait for the answers of the orders in flight (of ``symbol``, or all)."""
        tasks = [t for s, t in self.sends.values() if symbol is None or s == symbol]
        if tasks:
            await asyncio.wait(tasks)

    async def _decode(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes]
    ) -> Signal | None:
        self.counts["signals_seen"] += 1
        try:
            return Signal.from_fields(fields)
        except DecodeError as exc:
            self.counts["bad_signals"] += 1
            log.warning("bad signal skipped", extra={"entry_id": entry_id, "error": str(exc)})
            await self.redis.xack(stream, GROUP_TRADER, entry_id)
            return None

    async def handle_signal(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Turn one signal into at most one order (or cancels) and record it, then XACK it."""
        signal = await self._decode(stream, entry_id, fields)
        if signal is None:
            return
        if signal.action == "cancel":
            await self.cancel_symbol(signal)
        else:
            await self.place(signal)
        await self.redis.xack(stream, GROUP_TRADER, entry_id)

    async def cancel_symbol(self, signal: Signal) -> None:
        """Cancel every working order of the signal's symbol."""
        self.counts["cancel_signals"] += 1
        working = [o.client_order_id for o in self.ledger.tracker.working(signal.symbol)]
        await self.ledger.record_event(
            "cancel_signal",
            {
                "signal_id": signal.signal_id,
                "symbol": signal.symbol,
                "reason": signal.reason,
                "orders": ",".join(working),
            },
        )
        await self.router.cancel_all(working, reason=f"signal {signal.signal_id}")

    async def place(self, signal: Signal) -> None:
        """Send one order for ``signal`` unless its intent exists or a limit refuses it."""
        follow = await self.start_place(signal)
        if follow is not None:
            await follow

    async def start_place(self, signal: Signal) -> Coroutine[Any, Any, None] | None:
        """Record the intent and write the order to the venue; return what follows its answer.

        The risk checks read memory only (the kill switch is refreshed in the background), so
        the one Redis round trip before the order leaves is the script recording the intent.
        ``None`` means nothing is left to wait for (refused, or recorded as such).
        """
        intent = build_intent(signal, ts_intent=self.clock(), order_type=self.settings.order_type)
        cid = intent.client_order_id
        reason = await self.refusal(signal, intent.order_type)
        if reason is not None:
            stored = await self.ledger.stored_intent(cid)
            if stored is not None:  # recorded (and maybe sent) by an earlier run: look it up
                log.info(
                    "intent exists: resolving, never resending", extra={"client_order_id": cid}
                )
                return self._resolved(stored)
            await self.ledger.record(intent, "rejected", {"reason": reason, "stage": "risk"})
            if reason.startswith(("position limit", "kill switch")):
                await self.cancel_breaches(signal.symbol)
            return None
        requests: list[Request] = []  # signed while Redis records the intent
        self.router.inflight.add(cid)  # reconciliation leaves it alone from here on
        sending = False
        try:
            stored = await self.ledger.record_intent(
                intent, meanwhile=lambda: requests.append(self.router.prepare(intent))
            )
            if stored is None:  # the send keeps it in flight until the venue answers
                sending = True
                return self.router.send(signal, intent, request=requests[0] if requests else None)
        finally:
            if not sending:
                self.router.inflight.discard(cid)
        log.info("intent exists: resolving, never resending", extra={"client_order_id": cid})
        return self._resolved(stored)  # after the discard: it stays in flight

    def _resolved(self, stored: OrderIntent) -> Coroutine[Any, Any, None]:
        """Return the lookup of an intent an earlier run recorded; in flight from now on."""
        self.router.inflight.add(stored.client_order_id)  # resolve() takes it off at the end

        async def resolve() -> None:
            await self.router.resolve(stored, source="restart")

        return resolve()

    async def refusal(self, signal: Signal, order_type: str) -> str | None:
        """Return why ``signal`` may not become an order now, or ``None`` (memory only)."""
        if order_type == "LIMIT" and not (to_decimal(signal.price) or 0) > 0:
            return f"a LIMIT order needs the signal's price, got {signal.price!r}"
        book = self.ledger.tracker.book
        reason = check_signal(
            signal,
            self.limits,
            position=book.qty(signal.symbol),
            working=[o.working() for o in self.ledger.tracker.working(signal.symbol)],
            price=to_decimal(signal.price) or book.get(signal.symbol).mark_price,
            kill_switch=self.kill_switch,
        )
        if reason is None and not self.bucket.take(self.clock()):
            reason = f"order rate limit: more than {self.settings.max_orders_per_s:g} per second"
        return reason

    async def refresh_kill_switch(self) -> bool:
        """Read the kill switch into memory; record and log a change; return whether it is on."""
        on = await kill_switch_on(self.redis, self.settings)
        if on != self.kill_switch:
            self.kill_switch = on
            log.warning("kill switch %s", "on" if on else "off")
            await self.ledger.record_event("kill_switch", {"on": "1" if on else "0"})
        return on

    async def cancel_breaches(self, symbol: str | None = None) -> None:
        """Cancel the working orders the kill switch or a position limit no longer allows."""
        tracker = self.ledger.tracker
        if self.kill_switch:
            cids = [o.client_order_id for o in tracker.working()]
            reason = "kill switch"
        else:
            symbols = [symbol] if symbol else sorted({o.symbol for o in tracker.working()})
            cids = []
            for s in symbols:
                working = [o.working() for o in tracker.working(s)]
                cids += breach_cancels(s, tracker.position(s), working, self.limits)
            reason = "position limit"
        cids = [c for c in cids if c not in self.router.inflight]
        if cids:
            await self.router.cancel_all(cids, reason=reason)


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    redis: aioredis.Redis | None = None,
    clock: Callable[[], int] | None = None,
    venue: Venue | AlpacaRest | None = None,
    limits: RiskLimits | None = None,
    status_attempts: int = 8,
    retry_base_s: float = 0.2,
    recv_window_ms: int = 5000,
    guard_interval_s: float = 0.25,
    unresolved_every_s: float = 30.0,
    kill_switch_every_s: float = KILL_SWITCH_EVERY_S,
    max_inflight: int | None = None,
) -> None:
    """Trade until ``stop`` is set; every dependency can be injected by tests.

    With ``settings.venue == "alpaca"`` orders go over Alpaca's REST API (an injected ``venue``
    is then an :class:`AlpacaRest`); a refused Alpaca key stops the stage as a ConfigError.
    """
    alpaca = settings.venue == "alpaca"
    own_redis, own_venue = redis is None, venue is None
    signer: Signer | None = None
    if alpaca:
        configured = rest_from_settings(settings)  # checks the credentials
        venue = venue if venue is not None else configured
    elif not settings.binance_api_key or not settings.binance_api_secret:
        raise ConfigError(
            "the trader needs API credentials: set BINANCE_API_KEY and BINANCE_API_SECRET"
        )
    else:
        signer = load_signer(settings.binance_key_type, settings.binance_api_secret.reveal())
    session = settings.binance_key_type == "ed25519"  # log on once, then send unsigned
    redis = redis if redis is not None else connect_redis(settings.redis_url)
    if venue is None:
        assert signer is not None
        key = settings.binance_api_key.reveal()

        def logon() -> dict[str, Any]:
            return logon_params(api_key=key, timestamp_ms=time.time_ns() // MS, signer=signer)

        venue = BinanceWsApi(settings.binance_ws_api_url, logon=logon if session else None)
    trader = Trader(
        settings,
        redis,
        venue,
        clock=clock or time.time_ns,
        limits=limits if limits is not None else default_limits(settings),
        status_attempts=status_attempts,
        retry_base_s=retry_base_s,
        recv_window_ms=recv_window_ms,
        signer=signer,
        session=session,
        max_inflight=max_inflight or settings.max_orders_in_flight,
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
        backoff = Backoff(base_s=0.1, cap_s=5.0)
        while True:  # Redis may still be starting (or restarting)
            try:
                async with redis_errors():
                    await trader.prepare()
                break
            except RedisUnavailable as exc:
                log.warning("Redis unavailable at start, retrying", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next_delay_s())
                if stop.is_set():
                    return
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
        await first_failure(
            [
                asyncio.create_task(trader.consume_signals(stop), name="trader-signals"),
                asyncio.create_task(
                    trader.consume(
                        updates, trader.ledger.record_update, stop, count=settings.batch_size
                    ),
                    name="trader-updates",
                ),
                *background_tasks(
                    trader,
                    stop,
                    guard_interval_s=guard_interval_s,
                    unresolved_every_s=unresolved_every_s,
                    kill_switch_every_s=kill_switch_every_s,
                ),
            ]
        )
    except AuthError as exc:
        if not alpaca:
            raise
        raise ConfigError(
            f"Alpaca refused the API key ({exc}): check ALPACA_API_KEY and ALPACA_API_SECRET"
        ) from exc
    finally:
        health_stop.set()
        if health_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await health_task
        if own_venue:
            await venue.aclose()
        await trader.ledger.intents.close()
        if own_redis:
            await redis.aclose()
        log.info("trader stopped", extra=trader.counts)
