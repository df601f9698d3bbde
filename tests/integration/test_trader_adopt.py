"""Reconciliation adopts the venue's orders that carry this deployment's ids but no intent.

Redis may lose its last second of writes (an AOF tail cut by an OS crash): an order then exists,
maybe filled, at the venue with no intent, no ``orders`` entry and no position change. The trader
finds it at start, after a Redis reconnect and on a period, records it with a warning and moves
the position by its fills; it never sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import fakeredis
import orjson
import pytest

from tests.integration.test_trader_shell import FakeVenue, Harness, make_settings, make_signal
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.units import client_order_id_for


async def _lose_the_tail(h: Harness, cids: list[str], position: dict[str, str]) -> None:
    """Forget what Redis lost: the intents, their ``orders`` entries, and the position change."""
    keys = h.settings.keys
    for cid in cids:
        await h.redis.delete(keys.intent("binance", cid))
        await h.redis.srem(keys.working_orders("binance"), cid)
        for entry_id, fields in await h.redis.xrange(keys.orders("binance")):
            if decode_fields(fields).get("client_order_id") == cid:
                await h.redis.xdel(keys.orders("binance"), entry_id)
    await h.redis.delete(keys.positions("binance"))
    if position:
        await h.redis.hset(keys.positions("binance"), mapping=position)


async def _positions(h: Harness) -> dict[str, str]:
    return decode_fields(await h.redis.hgetall(h.settings.keys.positions("binance")))


def test_an_order_whose_intent_was_lost_is_adopted_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue)
        await h.start_acked(make_signal(1), make_signal(2, side="sell", qty="0.0004"))
        await h.finish()
        lost = client_order_id_for(make_signal(2).signal_id)
        await _lose_the_tail(h, [lost], {"BTCUSDT": "0.001", "BTCUSDT:avg_cost": "61800"})
        venue.orders["someone-elses"] = {**venue.orders[lost], "clientOrderId": "someone-elses"}

        with caplog.at_level(logging.WARNING, logger="tickpipe.trader"):
            h.start()
            await until(lambda: h.has_event("adopted"))
            health = h.settings.keys.health("trader", h.settings.instance)

            async def counted() -> bool:
                raw = await h.redis.get(health)
                return raw is not None and orjson.loads(raw).get("adopted") == 1

            await until(counted)
            await h.finish()

        adopted = await h.events_named("adopted")
        assert [a["client_order_id"] for a in adopted] == [lost]  # not someone else's order
        assert adopted[0]["status"] == "FILLED" and adopted[0]["executed_qty"] == "0.0004"
        stored = orjson.loads(await h.redis.get(h.settings.keys.intent("binance", lost)))
        assert stored["side"] == "sell" and stored["state"]["status"] == "FILLED"
        assert Decimal((await _positions(h))["BTCUSDT"]) == Decimal("0.0006")  # venue fills
        assert len(venue.place_calls) == 2  # never sent again
        assert any("adopted" in r.getMessage() and lost in str(r.__dict__) for r in caplog.records)

    asyncio.run(scenario())


def test_an_order_lost_while_running_is_adopted_after_a_redis_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        venue = FakeVenue(status="NEW")  # a LIMIT order rests at the venue
        settings = make_settings(order_type="LIMIT", reconcile_every_s=3600.0)
        h = Harness(venue, settings, redis=fakeredis.FakeAsyncRedis(server=server))
        await h.start_acked(make_signal(1))
        cid = client_order_id_for(make_signal(1).signal_id)
        # The order fills; Redis restarts without its last writes (the intent among them).
        venue.fill(cid, "0.001", "61.8")
        await _lose_the_tail(h, [cid], {})
        with caplog.at_level(logging.WARNING, logger="tickpipe.trader"):
            server.connected = False

            async def noticed() -> bool:  # by the trader's signal reader, not only its health
                return any(
                    "trader reading" in r.getMessage() and "cannot take it now" in r.getMessage()
                    for r in caplog.records
                )

            await until(noticed)
            server.connected = True
            await until(lambda: h.has_event("adopted"), timeout_s=30)  # backoff reaches 5 s
        await h.finish()
        adopted = (await h.events_named("adopted"))[0]
        assert adopted["client_order_id"] == cid and adopted["reason"] == "redis-reconnect"
        assert (await _positions(h))["BTCUSDT"] == "0.001"
        assert not await h.redis.sismember(settings.keys.working_orders("binance"), cid)
        assert len(venue.place_calls) == 1

    asyncio.run(scenario())


def test_a_lost_working_order_is_adopted_by_the_periodic_reconciliation() -> None:
    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        settings = make_settings(order_type="LIMIT", reconcile_every_s=0.2)
        h = Harness(venue, settings)
        await h.start_acked(make_signal(1))
        cid = client_order_id_for(make_signal(1).signal_id)
        await _lose_the_tail(h, [cid], {})
        venue.fill(cid, "0.0004", "24.72")  # partly filled, still working
        await until(lambda: h.has_event("adopted"))
        await h.finish()
        adopted: dict[str, Any] = (await h.events_named("adopted"))[0]
        assert adopted["status"] == "PARTIALLY_FILLED" and adopted["reason"] == "periodic"
        assert await h.redis.sismember(settings.keys.working_orders("binance"), cid)
        assert (await _positions(h))["BTCUSDT"] == "0.0004"
        assert len(venue.place_calls) == 1

    asyncio.run(scenario())


def test_a_pending_signal_whose_intent_was_lost_is_not_sent_again() -> None:
    """Redis lost the intent and the XACK of a signal whose order the venue filled.

    The signal is read again at the next start; reconciliation must have adopted the order
    before it is handled, or it would be sent a second time (a filled order's client order id
    may be used again at the venue).
    """

    async def scenario() -> None:
        venue = FakeVenue()
        venue.hang_after_accept = True  # at the venue and filled; the answer never comes
        h = Harness(venue)
        signal = make_signal(1)
        cid = client_order_id_for(signal.signal_id)
        await h.add_signal(signal)
        h.start()
        await until(lambda: len(venue.place_calls) == 1)
        await h.crash()  # the signal stays pending
        venue.hang_after_accept = False
        await _lose_the_tail(h, [cid], {})  # and Redis lost the intent
        await h.add_signal(make_signal(2))  # the market, and a signal after it
        h.start()
        await until(lambda: h.has_event("adopted"))
        await until(lambda: h.has_event("ack"))
        await until(h.signals_read)
        await h.finish()
        assert [p["newClientOrderId"] for p in venue.place_calls] == [
            cid,
            client_order_id_for(make_signal(2).signal_id),
        ]
        assert (await _positions(h))["BTCUSDT"] == "0.002"

    asyncio.run(scenario())
