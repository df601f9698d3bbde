"""One trader per account: the lease, the standby, the takeover and the fence (fakeredis).

Two traders share one fakeredis server and one fake venue. A trader that is "frozen" runs its
whole event loop in a thread of its own, and the test blocks that thread as SIGSTOP would block
the process, then lets it go on.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import fakeredis
import orjson
import pytest
import redis.exceptions as rexc

from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    make_settings,
    make_signal,
    order_events,
    pending,
    seed_market,
    signal_stream,
    update_for,
)
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.control import set_kill_switch
from tickpipe.trader.shell import run

LEASE_MS = 800
RUN_KW: dict[str, Any] = {
    "status_attempts": 3,
    "retry_base_s": 0.01,
    "recv_window_ms": 100,
    "guard_interval_s": 0.02,
}


def lease_settings(instance: str, **overrides: Any) -> Settings:
    return make_settings(instance=instance, trader_lease_ms=LEASE_MS, **overrides)


async def _health(redis: Any, settings: Settings, instance: str) -> dict[str, Any] | None:
    raw = await redis.get(settings.keys.health("trader", instance))
    return orjson.loads(raw) if raw else None


async def _status_is(redis: Any, settings: Settings, instance: str, status: str) -> bool:
    health = await _health(redis, settings, instance)
    return health is not None and health["status"] == status


async def _events(redis: Any, settings: Settings, name: str) -> list[dict[str, str]]:
    return [e for e in await order_events(redis, settings) if e["event"] == name]


async def _has(redis: Any, settings: Settings, name: str, n: int = 1) -> bool:
    return len(await _events(redis, settings, name)) >= n


def test_a_second_trader_stands_by_then_takes_over_and_claims_the_pending_signal() -> None:
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        venue = FakeVenue()
        first = Harness(
            venue, lease_settings("trd-a"), redis=fakeredis.FakeAsyncRedis(server=server), **RUN_KW
        )
        second = Harness(
            venue, lease_settings("trd-b"), redis=fakeredis.FakeAsyncRedis(server=server), **RUN_KW
        )
        redis, settings = first.redis, first.settings
        first.start()
        await until(lambda: _status_is(redis, settings, "trd-a", "ok"))
        second.start()
        await until(lambda: _status_is(redis, settings, "trd-b.standby", "standby"))

        venue.hang_after_accept = True  # the order is at the venue, its answer never comes
        await first.add_signal(make_signal(1))
        await until(lambda: len(venue.place_calls) == 1)
        await first.crash()  # dead: no release, the lease runs out
        venue.hang_after_accept = False

        # The standby takes over, claims the dead owner's pending signal and looks it up.
        await until(lambda: _status_is(redis, settings, "trd-b", "ok"), timeout_s=10)
        await until(lambda: _has(redis, settings, "ack"))
        await second.add_signal(make_signal(2, side="sell", qty="0.0004"))
        await until(lambda: _has(redis, settings, "ack", 2))
        await until(lambda: _zero(pending(redis, signal_stream(settings))))
        await second.finish()

        cids = [p["newClientOrderId"] for p in venue.place_calls]
        assert cids == [client_order_id_for(make_signal(n).signal_id) for n in (1, 2)]
        acks = await _events(redis, settings, "ack")
        assert [a["source"] for a in acks] == ["status:reconcile:start", "place"]
        positions = decode_fields(await redis.hgetall(settings.keys.positions("binance")))
        assert Decimal(positions["BTCUSDT"]) == Decimal("0.0006")  # the venue's fills
        assert not await redis.exists(settings.keys.trader_lease("binance"))  # released on stop

    asyncio.run(scenario())


async def _zero(count: Any) -> bool:
    return await count == 0


class FreezableRedis(fakeredis.FakeAsyncRedis):
    """A fakeredis client that blocks its whole event loop right after one chosen command."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.freeze_after: str | None = None
        self.frozen = threading.Event()
        self.thawed = threading.Event()

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = await super().execute_command(*args, **options)
        if self.freeze_after is not None and str(args[0]).upper() == self.freeze_after:
            self.freeze_after = None
            self.frozen.set()
            self.thawed.wait(60)  # the loop (every task of this trader) stops here, as SIGSTOP
        return reply


class ThreadedTrader:
    """Run one trader in a thread with its own event loop, so that loop can be frozen."""

    def __init__(self, server: fakeredis.FakeServer, settings: Settings, venue: FakeVenue) -> None:
        self.redis = FreezableRedis(server=server)
        self.settings = settings
        self.venue = venue
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name="frozen-trader", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc  # reported by finish()

    async def _run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.ready.set()
        await run(self.settings, self.stop, redis=self.redis, venue=self.venue, **RUN_KW)

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(10)

    def finish(self) -> None:
        assert self.loop is not None and self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)
        assert not self.thread.is_alive(), "the thawed trader did not stop"
        assert self.error is None, self.error


def test_an_owner_frozen_after_its_intent_thaws_without_sending_or_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGSTOP right after a signal's intent, a standby takes over, SIGCONT: nothing twice."""
    monkeypatch.setattr(
        "tickpipe.common.redis_link.direct_pool", lambda redis: None
    )  # every command seen

    async def scenario() -> None:
        server = fakeredis.FakeServer()
        venue = FakeVenue()
        settings = lease_settings("trd")  # the documented failover: the same instance name
        owner = ThreadedTrader(server, settings, venue)
        standby = Harness(venue, settings, redis=fakeredis.FakeAsyncRedis(server=server), **RUN_KW)
        redis = standby.redis
        owner.start()
        await until(lambda: _status_is(redis, settings, "trd", "ok"))
        standby.start()
        await until(lambda: _status_is(redis, settings, "trd.standby", "standby"))

        owner.redis.freeze_after = "EVALSHA"  # frozen right after the intent is recorded
        first = make_signal(1)
        await standby.add_signal(first)
        await until(lambda: owner.redis.frozen.is_set())
        cid = client_order_id_for(first.signal_id)
        assert await redis.exists(settings.keys.intent("binance", cid))
        assert venue.place_calls == []

        # The standby takes over; the intent exists, so it looks the order up: none. Past the
        # receive window no copy of the owner's request can be accepted: it places it, once.
        await until(lambda: _has(redis, settings, "placed_again"), timeout_s=10)
        await until(lambda: _has(redis, settings, "ack"))
        second = make_signal(2, side="sell", qty="0.0004")
        await standby.add_signal(second)
        await until(lambda: _has(redis, settings, "ack", 2))
        before = await redis.xlen(settings.keys.orders("binance"))

        owner.redis.thawed.set()  # SIGCONT: the old owner must notice before it sends
        await until(lambda: _status_is(redis, settings, "trd.standby", "standby"))
        await seed_market(redis, settings, "BTCUSDT", "61800.5")
        await until(lambda: _zero(pending(redis, signal_stream(settings))))
        owner.finish()
        await standby.finish()

        assert [p["newClientOrderId"] for p in venue.place_calls] == [
            client_order_id_for(first.signal_id),  # by the standby, not by the thawed owner
            client_order_id_for(second.signal_id),
        ]
        assert await redis.xlen(settings.keys.orders("binance")) == before  # nothing after thaw
        positions = decode_fields(await redis.hgetall(settings.keys.positions("binance")))
        assert Decimal(positions["BTCUSDT"]) == Decimal("0.0006")  # the venue's two fills

    asyncio.run(scenario())


def test_positions_move_from_the_stored_value_by_each_fill_once() -> None:
    """A fill is applied to the position Redis holds, not written from memory; twice is once."""

    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        h = Harness(venue, make_settings(order_type="LIMIT"), **RUN_KW)
        signal = make_signal(1)
        cid = client_order_id_for(signal.signal_id)
        await h.add_signal(signal)
        h.start()
        await until(lambda: _has(h.redis, h.settings, "ack"))
        positions = h.settings.keys.positions("binance")
        updates = h.settings.keys.order_updates("binance")
        await h.redis.xadd(updates, update_for(cid, "PARTIALLY_FILLED", "0.0004", 1).to_fields())
        await until(lambda: _field_is(h.redis, positions, "BTCUSDT", "0.0004"))
        # Another writer (an operator's correction, an earlier owner) changed the position.
        await h.redis.hset(positions, "BTCUSDT", "0.0104")
        # The next fill moves the stored position; the same fill (same trade id) again does not.
        await h.redis.xadd(updates, update_for(cid, "PARTIALLY_FILLED", "0.0007", 2).to_fields())
        await h.redis.xadd(updates, update_for(cid, "PARTIALLY_FILLED", "0.0007", 2).to_fields())
        await until(lambda: _zero(pending(h.redis, updates)))
        await h.finish()
        assert await h.redis.hget(positions, "BTCUSDT") == b"0.0107"
        stored = orjson.loads(await h.redis.get(h.settings.keys.intent("binance", cid)))
        assert stored["state"]["filled_qty"] == "0.0007"
        assert stored["state"]["fill_ids"] == ["1", "2"]

    asyncio.run(scenario())


async def _field_is(redis: Any, key: str, field: str, value: str) -> bool:
    return await redis.hget(key, field) == value.encode()


async def _scripts_refused_is(redis: Any, settings: Settings, count: int) -> bool:
    health = await _health(redis, settings, settings.instance)
    return health is not None and health.get("scripts_refused") == count


class NoScripts(fakeredis.FakeAsyncRedis):
    """A fakeredis client whose ACL (pretend) refuses scripts: writes go through WATCH/MULTI."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVAL", "EVALSHA", "SCRIPT"):
            raise rexc.NoPermissionError("User trader has no permissions to run the command")
        return await super().execute_command(*args, **options)


@pytest.mark.parametrize("scripts", [True, False], ids=["script", "watch-multi"])
@pytest.mark.parametrize("path", ["signal", "update", "mark", "cancel", "kill-switch"])
def test_a_trader_whose_lease_was_taken_writes_nothing(path: str, scripts: bool) -> None:
    """Each write path of an owner that lost its lease (it does not know yet) is refused."""

    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        settings = make_settings(order_type="LIMIT", trader_lease_ms=60_000)
        redis = fakeredis.FakeAsyncRedis() if scripts else NoScripts()
        h = Harness(venue, settings, redis=redis, **RUN_KW)
        signal = make_signal(1)
        cid = client_order_id_for(signal.signal_id)
        await h.add_signal(signal)
        h.start()
        await until(lambda: _has(redis, settings, "ack"))
        await until(lambda: _zero(pending(redis, signal_stream(settings))))
        # One refusal of the trader's scripts, noted once, in its health record.
        await until(lambda: _scripts_refused_is(redis, settings, 0 if scripts else 1))
        # Someone else holds the account now (as after a takeover while this one was frozen);
        # this trader renewed a moment ago, so it still believes it owns the account.
        keys = settings.keys
        lease_keys = [keys.trader_lease("binance")]
        lease_keys += [keys.trader_signals_lease(p) for p in settings.partitions()]
        for key in lease_keys:
            await redis.set(key, "someone-else", px=60_000)
        snapshot = await _dump(redis, settings)
        updates = keys.order_updates("binance")
        if path == "signal":  # would record an intent and place an order
            await h.add_signal(make_signal(2))
        elif path == "update":  # would record the fill, move the position, XACK the update
            await redis.xadd(updates, update_for(cid, "FILLED", "0.001", 3).to_fields())
        elif path == "mark":  # would write the position's mark price
            await seed_market(redis, settings, "BTCUSDT", "62000")
        elif path == "cancel":  # would record the cancel signal and cancel the working order
            await h.add_signal(make_signal(3, action="cancel"))
        else:  # would record the switch and cancel every working order
            await set_kill_switch(redis, settings, True)

        async def refused_or_written() -> bool:  # the owner stepped down, or wrote after all
            standby = await _status_is(redis, settings, "trader-test.standby", "standby")
            return standby or await _dump(redis, settings) != snapshot

        await until(refused_or_written)
        after = await _dump(redis, settings)
        await h.finish()

        assert after == snapshot
        assert len(venue.place_calls) == 1 and venue.cancel_calls == []
        if path == "update":
            assert await pending(redis, updates) == 1  # left for the owner
        if path in ("signal", "cancel"):
            assert await _unacknowledged(redis, signal_stream(settings)) == 1

    asyncio.run(scenario())


async def _unacknowledged(redis: Any, stream: str) -> int:
    """Entries of ``stream`` the trader group has not acknowledged (pending or never read)."""
    group = (await redis.xinfo_groups(stream))[0]
    last = group["last-delivered-id"]
    last = last.decode() if isinstance(last, bytes) else str(last)
    unread = await redis.xrange(stream, min=f"({last}") if last != "0-0" else []
    return int(group["pending"]) + len(unread or [])


async def _dump(redis: Any, settings: Settings) -> dict[Any, Any]:
    """Every trader-owned key of the venue: orders, positions, intents, working set."""
    keys = settings.keys
    out: dict[Any, Any] = {
        "orders": await redis.xrange(keys.orders("binance")),
        "positions": await redis.hgetall(keys.positions("binance")),
        "working": await redis.smembers(keys.working_orders("binance")),
        "dead": await redis.xrange(keys.trader_dead_letters("binance")),
    }
    async for key in redis.scan_iter(match=keys.intent("binance", "*")):
        out[key] = await redis.get(key)
    return out
