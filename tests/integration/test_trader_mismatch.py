"""A signal that meets an existing intent saying something else is a loud error, not "sent".

One signal id names one decision. If a signal arrives whose client order id already has an
intent with another side, quantity, price or symbol, the order was certainly not this signal's:
the signal becomes a dead letter with the reason, an error line is logged, and the trader's
health record and the dashboard show the alarm. Nothing is sent for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from tests.integration.test_trader_shell import FakeVenue, Harness, make_settings, make_signal
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.control import set_kill_switch


async def _dead_letters(h: Harness) -> list[dict[str, str]]:
    stream = h.settings.keys.trader_dead_letters("binance")
    return [decode_fields(f) for _, f in await h.redis.xrange(stream)]


async def _health(h: Harness) -> dict[str, Any]:
    raw = await h.redis.get(h.settings.keys.health("trader", h.settings.instance))
    return orjson.loads(raw) if raw else {}


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"side": "sell"}, "side buy != sell"),
        ({"qty": "0.002"}, "qty 0.001 != 0.002"),
        ({"price": "61900"}, "price 61800.5 != 61900"),
    ],
    ids=["side", "qty", "price"],
)
def test_a_signal_that_differs_from_its_existing_intent_is_dead_lettered_and_alarmed(
    change: dict[str, str], what: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        h = Harness(venue, make_settings(order_type="LIMIT"))
        first = make_signal(1)
        await h.add_signal(first)
        other = make_signal(1, **change)  # the same signal id, another decision
        await h.add_signal(other)
        with caplog.at_level(logging.ERROR, logger="tickpipe.trader"):
            h.start()

            async def alarmed() -> bool:
                return bool((await _health(h)).get("alarms"))

            await until(alarmed)
            await until(lambda: _none_pending(h))
            health = await _health(h)
            await h.finish()

        cid = client_order_id_for(first.signal_id)
        assert [p["newClientOrderId"] for p in venue.place_calls] == [cid]
        assert venue.status_calls == []  # not "looked up as already sent"
        [dead] = await _dead_letters(h)
        assert dead["client_order_id"] == cid and dead["signal_id"] == first.signal_id
        assert dead["reason"] == f"intent mismatch: {what}"
        assert orjson.loads(dead["signal"])["side"] == other.side
        assert orjson.loads(dead["intent"])["side"] == "buy"
        assert health["intent_mismatches"] == 1
        assert health["alarms"] == [f"intent mismatch: {cid}: {what}"]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any("intent mismatch" in r.getMessage() for r in errors), caplog.records

    asyncio.run(scenario())


async def _none_pending(h: Harness) -> bool:
    return await h.signals_read() and bool(await _dead_letters(h))


def test_a_refused_signal_meeting_another_intent_is_dead_lettered_too() -> None:
    """With the kill switch on, the stored intent is compared before anything else."""

    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        h = Harness(venue, make_settings(order_type="LIMIT"))
        await h.add_signal(make_signal(1))
        h.start()
        await until(lambda: _acked(h))
        await h.finish()
        await set_kill_switch(h.redis, h.settings, True)
        await h.add_signal(make_signal(1, side="sell"))
        h.start()
        await until(lambda: _none_pending(h))
        await h.finish()
        [dead] = await _dead_letters(h)
        assert dead["reason"] == "intent mismatch: side buy != sell"
        assert len(venue.place_calls) == 1 and venue.status_calls == []

    asyncio.run(scenario())


async def _acked(h: Harness) -> bool:
    return any(e["event"] == "ack" for e in await h.events())


def test_the_same_decision_read_again_is_no_mismatch() -> None:
    """A signal entry read again (same side, quantity, price): no dead letter, no second order."""

    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        h = Harness(venue, make_settings(order_type="LIMIT"))
        await h.add_signal(make_signal(1))
        await h.add_signal(make_signal(1, qty="0.0010", price="61800.50"))  # same numbers
        h.start()
        await until(lambda: _acked_all(h))
        await h.finish()
        assert await _dead_letters(h) == []
        assert len(venue.place_calls) == 1  # recognised (or looked up while in flight), not sent

    asyncio.run(scenario())


async def _acked_all(h: Harness) -> bool:
    acks = [e for e in await h.events() if e["event"] == "ack"]
    return len(acks) >= 1 and await h.signals_read()
