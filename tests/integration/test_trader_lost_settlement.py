"""A decision whose intent Redis lost while it was looked up is executed once, never twice.

An order request is lost on the way (the venue never executed it and never answered); the trader
looks the order up until the venue's receive window has passed. Meanwhile Redis loses its last
writes (an AOF tail cut): the intent is gone. The lookup then finds that the venue never got the
decision and places it again, once, writing the intent back with the mark that it was placed
again; the signal, whose acknowledgement Redis lost too (or which the processor derives again
from ``raw``), is read again. It must meet that intent and only be acknowledged; a copy read
while the lookup still runs waits for it. Either way the venue executes the decision once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.integration.test_trader_adopt import _lose_the_tail
from tests.integration.test_trader_shell import FakeVenue, Harness, make_signal, signal_stream
from tests.waits import until
from tickpipe.common.errors import AmbiguousOutcome
from tickpipe.common.names import GROUP_TRADER
from tickpipe.common.units import client_order_id_for


class LostRequestVenue(FakeVenue):
    """The first order request is lost (not executed, no answer); lookups wait for ``answer``."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = True
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def place(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.lose_next:
            return await super().place(params)
        self.lose_next = False
        self._check(params)
        self.place_calls.append(params)
        raise AmbiguousOutcome("order.place: no answer within 10 s")

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.set()
        await self.answer.wait()
        return await super().status(params)


async def _consumed(h: Harness) -> bool:
    """Whether the trader has read and acknowledged every signal."""
    stream = signal_stream(h.settings)
    last = (await h.redis.xinfo_stream(stream))["last-generated-id"]
    for group in await h.redis.xinfo_groups(stream):
        if group["name"] in (GROUP_TRADER, GROUP_TRADER.encode()):
            return bool(group["pending"] == 0 and group["last-delivered-id"] == last)
    return False


def _executed_once(h: Harness, venue: LostRequestVenue, cid: str) -> None:
    """The lost request, then the one placed again: the venue executed the decision once."""
    assert [p["newClientOrderId"] for p in venue.place_calls] == [cid, cid]
    assert list(venue.orders) == [cid] and venue.orders[cid]["status"] == "FILLED"


async def _lose_the_intent_during_the_lookup(venue: LostRequestVenue) -> tuple[Harness, str]:
    """Start a trader on one signal; once its lost request is being looked up, lose the intent."""
    h = Harness(venue)
    signal = make_signal(1)
    cid = client_order_id_for(signal.signal_id)
    await h.add_signal(signal)
    h.start()
    await asyncio.wait_for(venue.asked.wait(), 5)  # the lookup of the lost request
    await _lose_the_tail(h, [cid], {})  # Redis lost the intent while the lookup runs
    return h, cid


def test_a_decision_placed_again_after_its_intent_was_lost_is_not_sent_a_third_time() -> None:
    async def scenario() -> None:
        venue = LostRequestVenue()
        h, cid = await _lose_the_intent_during_the_lookup(venue)
        venue.answer.set()
        await until(lambda: h.has_event("ack"))
        await h.add_signal(make_signal(1))  # the same decision, read again
        await until(lambda: _consumed(h))
        await h.finish()
        _executed_once(h, venue, cid)

    asyncio.run(scenario())


def test_the_same_decision_read_while_its_lost_request_is_looked_up_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The processor derives the signal again (a new entry) while the lookup still runs."""

    async def scenario() -> None:
        venue = LostRequestVenue()
        with caplog.at_level(logging.INFO, logger="tickpipe.trader"):
            h, cid = await _lose_the_intent_during_the_lookup(venue)
            await h.add_signal(make_signal(1))

            async def handled() -> bool:  # sent again, or held back until the lookup ends
                waiting = any("under way" in r.getMessage() for r in caplog.records)
                return waiting or len(venue.place_calls) > 1

            await until(handled)
            venue.answer.set()
            await until(lambda: h.has_event("ack"))
            await until(lambda: _consumed(h))
        await h.finish()
        _executed_once(h, venue, cid)

    asyncio.run(scenario())
