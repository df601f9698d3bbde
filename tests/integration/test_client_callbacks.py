"""The callback style of every venue client, against the mock exchange.

``run(callback)`` and ``process_incoming_data(callback)`` hand each event to the user's callback
(plain or async): every trade the mock sent reaches it, in order; an exception the callback
raises ends ``run`` with that exception; ``close()`` ends a running ``run`` and completes. Each
runs for every client, against the trades the mock recorded as sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.client_venues import Venue, venues
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import Event, Trade
from tickpipe.mock_ws import start_mock

RATE = 100.0
WANTED = 30  # trades the callback sees before the test ends the run


class Enough(Exception):
    """The user's callback decided to stop."""


def trade_ids(events: list[Event]) -> list[str]:
    return [e.trade_id for e in events if isinstance(e, Trade)]


@venues
def test_run_hands_every_trade_to_an_async_callback_in_order_and_raises_its_error(
    venue: Venue, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"

    async def main() -> tuple[list[Event], list[str]]:
        mock = await start_mock(
            trades_per_s=RATE, ground_truth_path=str(truth), **venue.mock_options
        )
        async with mock:
            client = venue.client(mock, backoff=Backoff(base_s=0.01))
            seen: list[Event] = []

            async def callback(event: Event) -> None:
                await asyncio.sleep(0)  # an async callback is awaited before the next event
                seen.append(event)
                if len(trade_ids(seen)) == WANTED:
                    raise Enough("the user's callback stops here")

            try:
                await venue.start(client)
                with pytest.raises(Enough):
                    await asyncio.wait_for(client.run(callback), 30)
            finally:
                await asyncio.wait_for(client.close(), 10)
            return seen, await venue.sent_at_least(truth, WANTED)

    seen, sent = asyncio.run(main())
    assert trade_ids(seen) == sent[:WANTED], "every trade sent, in order, none skipped"


@venues
def test_the_iterator_calls_back_first_and_close_ends_a_running_run(venue: Venue) -> None:
    async def main() -> tuple[list[Event], list[Event], list[Event]]:
        async with await start_mock(trades_per_s=RATE, **venue.mock_options) as mock:
            client = venue.client(mock, backoff=Backoff(base_s=0.01))
            called: list[Event] = []
            yielded: list[Event] = []
            seen: list[Event] = []
            await venue.start(client)
            try:
                async for event in client.process_incoming_data(called.append):
                    assert called[-1] is event, "the callback runs before the event is yielded"
                    yielded.append(event)
                    if len(trade_ids(yielded)) >= 5:
                        break
                running = asyncio.ensure_future(client.run(seen.append))
                await until(lambda: len(trade_ids(seen)) >= 5, timeout_s=20, what="5 trades")
            finally:
                await asyncio.wait_for(client.close(), 10)
            assert await asyncio.wait_for(running, 10) is None, "run ends with close()"
            return called, yielded, seen

    called, yielded, seen = asyncio.run(main())
    assert called == yielded
    later = trade_ids(seen)
    assert later and int(later[0]) > int(trade_ids(yielded)[-1]), "run goes on where it was"
