"""Integration tests of the one-round-trip intent record and the in-memory kill switch (fakeredis).

The script (``EVALSHA``) must write exactly what the ``WATCH``/``MULTI`` transaction writes, and
placing an order must read nothing from Redis before the order leaves: the only command between
a signal and ``order.place`` is the script.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import orjson
import redis.exceptions as rexc

from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    make_settings,
    make_signal,
    owned_ledger,
    seed_market,
)
from tests.waits import until
from tickpipe.common.names import Keys
from tickpipe.common.schema import OrderIntent, decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.control import set_kill_switch
from tickpipe.trader.core import build_intent
from tickpipe.trader.intents import INTENT_SHA
from tickpipe.trader.ledger import Ledger
from tickpipe.trader.shell import Trader, default_limits

KEYS = Keys("ti")
V = "binance"


class RecordingRedis(fakeredis.FakeAsyncRedis):
    """A fakeredis client that notes the name of every command it sends (pipelines aside)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.__dict__.setdefault("sent", []).append(str(args[0]).upper())
        return await super().execute_command(*args, **options)


class NoScripts(fakeredis.FakeAsyncRedis):
    """A fakeredis client whose ACL (pretend) refuses scripts, as an old ACL file would."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVAL", "EVALSHA"):
            raise rexc.NoPermissionError("User trader has no permissions to run the command")
        return await super().execute_command(*args, **options)


async def _ledger(redis: Any) -> Ledger:
    return await owned_ledger(redis, make_settings(namespace="ti"))


def _intent(n: int, *, price: str | None = None) -> OrderIntent:
    signal = make_signal(n, price=price or "61800.5")
    return build_intent(signal, ts_intent=1_700_000_000_000_000_000 + n, order_type="MARKET")


async def _written(redis: Any, cid: str) -> tuple[dict[str, Any], list[dict[str, str]], set[bytes]]:
    stored = orjson.loads(await redis.get(KEYS.intent(V, cid)))
    entries = [
        decode_fields(f)
        for _, f in await redis.xrange(KEYS.orders(V))
        if decode_fields(f)["client_order_id"] == cid
    ]
    return stored, entries, await redis.smembers(KEYS.working_orders(V))


def test_the_script_writes_what_the_transaction_wrote_and_never_twice() -> None:
    async def scenario() -> None:
        scripted, multi = fakeredis.FakeAsyncRedis(), fakeredis.FakeAsyncRedis()
        by_script, by_multi = await _ledger(scripted), await _ledger(multi)
        by_multi.intents.link.scripted = False
        intent = _intent(1)
        assert await by_script.record_intent(intent) is None
        assert await by_multi.record_intent(intent) is None
        assert by_script.intents.link.scripted and not by_multi.intents.link.scripted
        assert await scripted.script_exists(INTENT_SHA) == [True]
        assert await multi.script_exists(INTENT_SHA) == [False]
        cid = intent.client_order_id
        assert await _written(scripted, cid) == await _written(multi, cid)
        stored, entries, working = await _written(scripted, cid)
        assert stored == intent.to_fields()
        assert entries == [{**intent.to_fields(), "event": "intent"}]
        assert working == {cid.encode()}
        assert cid in by_script.tracker.orders
        # A second record of the same intent (a signal read again) returns the stored one.
        again = build_intent(make_signal(1), ts_intent=5, order_type="MARKET")
        assert await by_script.record_intent(again) == intent
        assert len((await _written(scripted, cid))[1]) == 1

    asyncio.run(scenario())


def test_a_server_without_the_cached_script_gets_it_again_by_eval() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        ledger = await _ledger(redis)
        assert await ledger.record_intent(_intent(1)) is None
        await redis.script_flush()  # a restarted or failed-over server
        assert await redis.script_exists(INTENT_SHA) == [False]
        signed: list[int] = []
        assert await ledger.record_intent(_intent(2), meanwhile=lambda: signed.append(2)) is None
        assert signed == [2]
        assert await redis.script_exists(INTENT_SHA) == [True]
        assert await redis.scard(KEYS.working_orders(V)) == 2

    asyncio.run(scenario())


def test_an_acl_that_refuses_scripts_falls_back_to_the_transaction_once() -> None:
    async def scenario() -> None:
        redis = NoScripts()
        ledger = await _ledger(redis)
        first, second = _intent(1), _intent(2)
        signed: list[int] = []
        assert await ledger.record_intent(first, meanwhile=lambda: signed.append(1)) is None
        assert not ledger.intents.link.scripted
        assert signed == [1]  # the order is signed once, whichever path recorded it
        assert await ledger.record_intent(second) is None
        assert await ledger.record_intent(_intent(1)) == first
        assert await redis.scard(KEYS.working_orders(V)) == 2
        stored, entries, _ = await _written(redis, second.client_order_id)
        assert stored == second.to_fields()
        assert entries == [{**second.to_fields(), "event": "intent"}]

    asyncio.run(scenario())


class SnapshotVenue(FakeVenue):
    """A venue that notes which Redis commands had been sent when each order arrived."""

    def __init__(self, redis: RecordingRedis) -> None:
        super().__init__()
        self.redis = redis
        self.seen_at_place: list[list[str]] = []

    async def place(self, params: dict[str, Any]) -> dict[str, Any]:
        self.seen_at_place.append(list(self.redis.__dict__.get("sent", [])))
        return await super().place(params)


def test_the_only_redis_command_before_an_order_leaves_is_the_script() -> None:
    async def scenario() -> None:
        redis = RecordingRedis()
        settings = make_settings()
        venue = SnapshotVenue(redis)
        trader = Trader(settings, redis, venue, clock=time.time_ns, limits=default_limits(settings))
        trader.ledger.intents.link.pool = None  # through execute_command, where it is recorded
        await seed_market(redis, settings, "BTCUSDT", "61800.5")
        assert await trader.lease.acquire()
        await trader.prepare()
        for n in (1, 2):
            redis.sent = []
            await trader.place(make_signal(n))
        assert venue.seen_at_place == [["EVALSHA"], ["EVALSHA"]]
        assert trader.counts["acks"] == 2
        # A signal read again after a crash: its intent exists, so it is looked up, not sent.
        redis.sent = []
        await trader.place(make_signal(1))
        # Its outcome is recorded (the venue's order id): neither sent nor looked up again.
        assert len(venue.place_calls) == 2 and venue.status_calls == []
        assert redis.sent[0] == "EVALSHA"

    asyncio.run(scenario())


def test_a_refused_signal_whose_intent_exists_is_looked_up_not_rejected() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        venue = FakeVenue()
        trader = Trader(settings, redis, venue, clock=time.time_ns, limits=default_limits(settings))
        await seed_market(redis, settings, "BTCUSDT", "61800.5")
        assert await trader.lease.acquire()
        await trader.prepare()
        await trader.place(make_signal(1))
        await set_kill_switch(redis, settings, True)
        assert await trader.refresh_kill_switch()
        await trader.place(make_signal(1))  # read again: sent before the switch, so look it up
        await trader.place(make_signal(2))  # new: refused
        events = [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders(V))]
        rejected = [e for e in events if e["event"] == "rejected"]
        assert [e["client_order_id"] for e in rejected] == [
            client_order_id_for(make_signal(2).signal_id)
        ]
        assert len(venue.place_calls) == 1 and venue.status_calls == []  # outcome recorded

    asyncio.run(scenario())


def test_a_kill_switch_set_before_start_refuses_the_first_signal() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, kill_switch_every_s=60.0)  # only the read at start can see it
        await set_kill_switch(h.redis, h.settings, True)
        await h.add_signal(make_signal(1))
        h.start()
        await until(lambda: h.has_event("rejected"))
        await h.finish()
        events = await h.events()
        assert [e["on"] for e in events if e["event"] == "kill_switch"] == ["1"]
        rejected = next(e for e in events if e["event"] == "rejected")
        assert rejected["reason"] == "kill switch is on"
        assert venue.place_calls == []

    asyncio.run(scenario())


def test_a_kill_switch_set_while_running_stops_orders_within_the_refresh_period() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, kill_switch_every_s=0.05)
        h.start()
        health = h.settings.keys.health("trader", h.settings.instance)

        async def running() -> bool:
            return bool(await h.redis.exists(health))

        await until(running)
        await set_kill_switch(h.redis, h.settings, True)
        await until(lambda: h.has_event("kill_switch"))
        await h.add_signal(make_signal(1))
        await until(lambda: h.has_event("rejected"))
        await h.finish()
        assert venue.place_calls == []

    asyncio.run(scenario())


def test_the_fence_and_the_intent_record_share_one_decision_about_scripts() -> None:
    """One refusal switches the trader's every write to WATCH/MULTI: no second EVALSHA."""

    class CountingNoScripts(NoScripts):
        refused = 0

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            if str(args[0]).upper() in ("EVAL", "EVALSHA"):
                CountingNoScripts.refused += 1
            return await super().execute_command(*args, **options)

    async def scenario() -> None:
        redis = CountingNoScripts()
        ledger = await _ledger(redis)
        ledger.intents.link.pool = None  # through execute_command, where it is counted
        assert ledger.fence.link is ledger.intents.link
        assert await ledger.record_intent(_intent(1)) is None
        await ledger.record_event("kill_switch", {"on": "1"})
        assert CountingNoScripts.refused == 1 and ledger.fence.link.scripts_refused == 1
        entries = [decode_fields(f) for _, f in await redis.xrange(KEYS.orders(V))]
        assert [e["event"] for e in entries] == ["intent", "kill_switch"]

    asyncio.run(scenario())
