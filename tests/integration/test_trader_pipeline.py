"""The trader pipelines orders: the next signal's order leaves before the venue answers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    _zero,
    make_settings,
    make_signal,
    pending,
    seed_market,
    signal_stream,
)
from tests.waits import until
from tickpipe.common.errors import AuthError
from tickpipe.common.units import client_order_id_for


class HeldVenue(FakeVenue):
    """Accept each order at once, but answer only once ``release`` is set."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.release = asyncio.Event()

    async def place(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = await super().place(params)
        await self.release.wait()
        return answer


async def _placed(venue: FakeVenue, n: int) -> bool:
    return len(venue.place_calls) == n


async def _health_shows(h: Harness, **wanted: int) -> bool:
    raw = await h.redis.get(h.settings.keys.health("trader", h.settings.instance))
    record = orjson.loads(raw) if raw else {}
    return all(record.get(name) == value for name, value in wanted.items())


def test_orders_leave_before_the_previous_answers_and_each_is_acknowledged_once() -> None:
    async def scenario() -> None:
        venue = HeldVenue()
        h = Harness(venue)
        signals = [make_signal(n) for n in range(1, 4)]
        for signal in signals:
            await h.add_signal(signal)
        h.start()
        await until(lambda: _placed(venue, 3))  # all three out, none answered yet
        assert not await h.has_event("ack")
        assert await pending(h.redis, signal_stream(h.settings)) == 3  # none acknowledged
        venue.release.set()
        await until(h.signals_read)
        await h.finish()
        cids = [client_order_id_for(s.signal_id) for s in signals]
        assert [p["newClientOrderId"] for p in venue.place_calls] == cids
        acks = [e["client_order_id"] for e in await h.events() if e["event"] == "ack"]
        assert sorted(acks) == sorted(cids)
        position = await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT")
        assert position == b"0.003"

    asyncio.run(scenario())


def test_at_most_max_inflight_orders_await_their_answers() -> None:
    async def scenario() -> None:
        venue = HeldVenue()
        h = Harness(venue, settings=make_settings(max_orders_in_flight=2))
        for n in range(1, 4):
            await h.add_signal(make_signal(n))
        h.start()
        await until(lambda: _placed(venue, 2))
        # The health record counts a signal once decoded, just before it waits for a slot: once it
        # shows the third, that signal is waiting, and it stays waiting until an answer comes.
        await until(lambda: _health_shows(h, signals_seen=3, orders_in_flight=2))
        assert len(venue.place_calls) == 2
        venue.release.set()
        await until(lambda: _placed(venue, 3))
        await until(h.signals_read)
        await h.finish()

    asyncio.run(scenario())


def test_a_cancel_signal_waits_for_its_symbols_orders_in_flight_and_cancels_them() -> None:
    async def scenario() -> None:
        venue = HeldVenue()
        h = Harness(venue, settings=make_settings(order_type="LIMIT"))
        place = make_signal(1)
        await h.add_signal(place)
        await h.add_signal(make_signal(2, action="cancel", side="", qty="", price=""))
        h.start()
        await until(lambda: _placed(venue, 1))
        assert venue.cancel_calls == []  # its order has not answered yet
        venue.release.set()
        await until(h.signals_read)
        await h.finish()
        cid = client_order_id_for(place.signal_id)
        assert [c["origClientOrderId"] for c in venue.cancel_calls] == [cid]
        events = {e["event"]: e for e in await h.events()}
        assert events["cancel_signal"]["orders"] == cid
        assert venue.orders[cid]["status"] == "CANCELED"

    asyncio.run(scenario())


def test_a_refused_key_in_an_order_in_flight_stops_the_stage() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.place_error = {"code": -2015, "msg": "Invalid API-key, IP, or permissions."}
        h = Harness(venue)
        await h.add_signal(make_signal(1))
        h.start()
        assert h.task is not None
        with pytest.raises(AuthError):
            await asyncio.wait_for(h.task, 5)
        assert await h.has_event("rejected")
        assert await pending(h.redis, signal_stream(h.settings)) == 1  # read again at restart

    asyncio.run(scenario())


def test_a_stop_waits_for_the_orders_in_flight_and_acknowledges_each() -> None:
    async def scenario() -> None:
        venue = HeldVenue()
        h = Harness(venue, max_inflight=2)
        for n in range(1, 5):
            await h.add_signal(make_signal(n))
        h.start()
        await until(lambda: _placed(venue, 2))
        h.stop.set()  # before any answer: the third signal waits for a slot, then sees the stop
        venue.release.set()
        await asyncio.wait_for(h.task, 5)
        acks = [e["client_order_id"] for e in await h.events() if e["event"] == "ack"]
        placed = [p["newClientOrderId"] for p in venue.place_calls]
        assert sorted(acks) == sorted(placed) and len(placed) == 2  # none left after the stop
        # Read but never handled: still pending, for this consumer to take up when it restarts.
        assert await pending(h.redis, signal_stream(h.settings)) == 2

    asyncio.run(scenario())


def test_signals_with_the_same_entry_id_in_two_partitions_are_both_placed() -> None:
    """Entry ids repeat across the partitions' signal streams; each signal is its own."""

    async def scenario() -> None:
        venue = HeldVenue()
        settings = make_settings(shards=2)
        h = Harness(venue, settings=settings)
        streams = [settings.keys.signals(p) for p in settings.partitions()]
        assert len(streams) == 2
        await seed_market(h.redis, settings, "BTCUSDT", make_signal(1).price)
        for n, stream in enumerate(streams, start=1):
            await h.redis.xadd(stream, make_signal(n).to_fields(), id="1700000000000-0")
        h.start()
        await until(lambda: _placed(venue, 2))  # both in flight at once
        venue.release.set()
        for stream in streams:
            await until(lambda s=stream: _zero(pending(h.redis, s)))
        await h.finish()
        acks = [e for e in await h.events() if e["event"] == "ack"]
        assert len(acks) == 2

    asyncio.run(scenario())


def test_redis_trouble_after_an_order_left_rereads_the_signal_and_never_resends() -> None:
    import redis.exceptions as rexc

    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue)
        stream = signal_stream(h.settings)
        evalsha = h.redis.evalsha
        failed: list[str] = []

        async def ack_failing_once(sha: str, numkeys: int, *args: Any) -> Any:
            keys = [a.decode() if isinstance(a, bytes) else a for a in args[:numkeys]]
            if stream in keys and not failed:  # the acknowledgement after the order left
                failed.append(stream)
                raise rexc.ConnectionError("connection reset")
            return await evalsha(sha, numkeys, *args)

        h.redis.evalsha = ack_failing_once  # type: ignore[method-assign]
        await h.add_signal(make_signal(1))
        h.start()
        await until(lambda: _placed(venue, 1))
        await until(lambda: bool(failed))
        await until(lambda: _zero(pending(h.redis, stream)))
        await h.finish()
        assert failed and len(venue.place_calls) == 1  # read again, not sent again
        events = [e["event"] for e in await h.events()]
        assert events.count("intent") == 1 and events.count("ack") == 1  # its outcome was known
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"

    asyncio.run(scenario())
