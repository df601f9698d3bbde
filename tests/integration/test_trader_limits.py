"""Integration tests of the trader's limits and cancels on fakeredis with a fake venue."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.integration.test_trader_shell import FakeVenue, Harness, make_settings, make_signal
from tests.waits import until
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.control import kill_switch_on, set_kill_switch


def limit_harness(venue: FakeVenue, **settings: Any) -> Harness:
    return Harness(venue, make_settings(order_type="LIMIT", **settings))


async def _status(venue: FakeVenue, cid: str, status: str) -> bool:
    return cid in venue.orders and venue.orders[cid]["status"] == status


def test_limit_orders_rest_until_a_cancel_signal_cancels_that_symbols_orders() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = limit_harness(venue, symbols=("BTCUSDT", "ETHUSDT"))
        btc1, btc2 = make_signal(1), make_signal(2, side="sell")
        eth = make_signal(3, symbol="ETHUSDT", signal_id="threshold:ETHUSDT:3", price="3000")
        await h.start_acked(btc1, btc2, eth)
        assert {o["type"] for o in venue.orders.values()} == {"LIMIT"}
        assert venue.place_calls[0]["price"] == "61800.5"
        assert venue.place_calls[0]["timeInForce"] == "GTC"
        working = await h.redis.smembers(h.settings.keys.working_orders("binance"))
        assert len(working) == 3

        await h.add_signal(make_signal(9, action="cancel", side="", qty="0", reason="rapid move"))
        await until(lambda: h.has_event("canceled", 2))
        await until(h.signals_read)
        await h.finish()
        canceled = {c["origClientOrderId"] for c in venue.cancel_calls}
        assert canceled == {client_order_id_for(s.signal_id) for s in (btc1, btc2)}
        eth_cid = client_order_id_for(eth.signal_id)
        assert venue.orders[eth_cid]["status"] == "NEW"
        working = await h.redis.smembers(h.settings.keys.working_orders("binance"))
        assert working == {eth_cid.encode()}
        signal_entry = (await h.events_named("cancel_signal"))[0]
        assert signal_entry["symbol"] == "BTCUSDT" and signal_entry["reason"] == "rapid move"
        assert len(venue.place_calls) == 3  # a cancel signal places nothing

    asyncio.run(scenario())


def test_a_cancel_that_times_out_is_settled_by_status_and_one_that_lost_the_race_too() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = limit_harness(venue)
        await h.start_acked(make_signal(1), make_signal(2))
        first, second = (client_order_id_for(make_signal(n).signal_id) for n in (1, 2))
        venue.fill(second, "0.001", "61.8")  # filled before the cancel arrives
        venue.cancel_times_out = True
        await h.add_signal(make_signal(3, action="cancel"))
        await until(lambda: h.has_event("ack", 4))
        await h.finish()
        acks = {
            e["client_order_id"]: e for e in await h.events_named("ack") if e["source"] != "place"
        }
        assert acks[first]["status"] == "CANCELED" and acks[first]["source"] == "status:cancel"
        assert acks[second]["status"] == "FILLED"
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"
        assert await h.redis.scard(h.settings.keys.working_orders("binance")) == 0

    asyncio.run(scenario())


def test_kill_switch_refuses_orders_and_cancels_every_working_order() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = limit_harness(venue)
        await h.start_acked(make_signal(1))
        cid = client_order_id_for(make_signal(1).signal_id)
        await set_kill_switch(h.redis, h.settings, True)
        assert await kill_switch_on(h.redis, h.settings)
        await until(lambda: _status(venue, cid, "CANCELED"))
        await h.add_signal(make_signal(2))
        await until(lambda: h.has_event("rejected"))
        rejected = (await h.events_named("rejected"))[0]
        assert rejected["reason"] == "kill switch is on" and rejected["stage"] == "risk"
        assert len(venue.place_calls) == 1

        await set_kill_switch(h.redis, h.settings, False)
        await until(lambda: h.has_event("kill_switch", 2))
        await h.add_signal(make_signal(3))
        await until(lambda: h.has_event("ack", 2))
        await h.finish()
        assert len(venue.place_calls) == 2
        switches = [e["on"] for e in await h.events_named("kill_switch")]
        assert switches == ["1", "0"]

    asyncio.run(scenario())


def test_position_notional_and_rate_limits_refuse_with_reasons() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(
            venue,
            make_settings(max_position="0.0015", max_notional="100", max_orders_per_s=2.0),
        )
        await h.add_signal(make_signal(1))  # fills: position 0.001
        await h.add_signal(make_signal(2))  # would reach 0.002 > 0.0015
        await h.add_signal(make_signal(3, qty="0.002", side="sell"))  # 123.6 quote > 100
        await h.add_signal(make_signal(4, side="sell"))  # passes: position 0
        await h.add_signal(make_signal(5, side="sell"))  # third order in the same second
        h.start()
        await until(lambda: h.has_event("rejected", 3))
        await until(h.signals_read)
        await h.finish()
        reasons = [e["reason"] for e in await h.events_named("rejected")]
        assert reasons[0].startswith("position limit: BTCUSDT would reach 0.002")
        assert reasons[1].startswith("notional limit: 123.601 exceeds 100")
        assert reasons[2].startswith("order rate limit")
        assert len(venue.place_calls) == 2
        position = await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT")
        assert Decimal(position.decode()) == 0

    asyncio.run(scenario())


def test_working_orders_past_the_position_limit_are_cancelled() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = limit_harness(venue, max_position="0.0015")
        await h.start_acked(make_signal(1))
        cid = client_order_id_for(make_signal(1).signal_id)
        # A fill from outside this order pushes the position to its limit: the order must go.
        await h.redis.hset(h.settings.keys.positions("binance"), "BTCUSDT", "0.0015")
        await h.finish()
        h.start()
        await until(lambda: _status(venue, cid, "CANCELED"))
        await h.finish()
        requested = (await h.events_named("cancel_requested"))[0]
        assert requested["reason"] == "position limit"

    asyncio.run(scenario())
