"""Every venue client with a consumer that falls behind, against the mock exchange.

A client's event buffer is bounded (``max_events``; 10,000 by default, 500 here). These tests
let it fill while the consumer does not read, then check what a user relies on: ``close()``
completes, a fatal error reaches the consumer instead of leaving it waiting, and no trade is lost
without a trace. Each runs for the Binance client (``BTCUSDT``), the Alpaca client (crypto
``BTC/USD``) and the IBKR client (``AAPL``), against the trades the mock recorded as sent
(IBKR's: each level-1 update with a last price or size, whose time is the trade's id).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.client_venues import GiveUp, GivingUp, Venue, venues
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import Event, Trade
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.venues.clients import Dropped, Policy, VenueClient

RATE = 500.0  # trades per second and symbol: the buffer fills within a second or two
MAX_EVENTS = 500


def client_for(
    venue: Venue, mock: MockExchange, *, giving_up: bool = False, **options: Any
) -> VenueClient:
    options = {"backoff": Backoff(base_s=0.01), "max_events": MAX_EVENTS, **options}
    client: VenueClient = venue.client(mock, giving_up=giving_up, **options)
    return client


async def fast_mock(venue: Venue, truth: Path | None = None) -> MockExchange:
    path = None if truth is None else str(truth)
    return await start_mock(trades_per_s=RATE, ground_truth_path=path, **venue.mock_options)


def backlog_full(client: VenueClient) -> bool:
    return bool(client._events.full())


@venues
def test_close_completes_while_the_buffer_is_full(venue: Venue) -> None:
    async def scenario() -> None:
        async with await fast_mock(venue) as mock:
            client = client_for(venue, mock)
            await venue.start(client)
            await until(lambda: backlog_full(client), timeout_s=30)
            await asyncio.wait_for(client.close(), 10)
            got = [e async for e in client.process_incoming_data()]
            assert got == [], "after close() the iteration ends at once"

    asyncio.run(scenario())


@venues
@pytest.mark.parametrize("policy", ["block", "drop"])
def test_a_fatal_error_with_a_full_buffer_reaches_the_consumer(
    venue: Venue, policy: Policy
) -> None:
    async def scenario() -> list[Event]:
        async with await fast_mock(venue) as mock:
            client = client_for(venue, mock, giving_up=True, policy=policy)
            assert isinstance(client, GivingUp)
            try:
                await venue.start(client)
                await until(lambda: backlog_full(client), timeout_s=30)
                if policy == "drop":  # events met the full buffer and were dropped
                    await until(lambda: client.dropped > 0, timeout_s=30)
                await venue.drop(mock)
                if policy == "drop":  # the reader keeps reading: the error meets a full buffer
                    await until(lambda: client.gave_up, timeout_s=30)
                got: list[Event] = []

                async def consume() -> None:
                    async for event in client.process_incoming_data():
                        got.append(event)

                with pytest.raises(GiveUp):
                    await asyncio.wait_for(consume(), 30)
                return got
            finally:
                await asyncio.wait_for(client.close(), 10)

    got = asyncio.run(scenario())
    assert len(got) >= MAX_EVENTS, "the events buffered before the error are delivered first"
    dropped = [e for e in got if isinstance(e, Dropped)]
    if policy == "drop":
        assert dropped and all(d.count > 0 for d in dropped)
    else:
        assert not dropped


async def read_backlog_and_more(client: VenueClient) -> list[Event]:
    """Read the whole backlog and some more: three buffers' worth of events."""
    got: list[Event] = []
    async for event in client.process_incoming_data():
        got.append(event)
        if len(got) >= 3 * MAX_EVENTS:
            break
    return got


@venues
def test_a_slow_consumer_loses_no_trade_by_default(venue: Venue, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[list[Event], list[str]]:
        async with await fast_mock(venue, truth) as mock:
            client = client_for(venue, mock)
            try:
                await venue.start(client)
                await until(lambda: backlog_full(client), timeout_s=30)
                got = await read_backlog_and_more(client)
                count = sum(isinstance(e, Trade) for e in got)
                return got, await venue.sent_at_least(truth, count)
            finally:
                await client.close()

    got, sent = asyncio.run(scenario())
    trades = [e.trade_id for e in got if isinstance(e, Trade)]
    assert len(trades) > MAX_EVENTS // 2, f"too few trades to tell: {len(trades)}"
    assert trades == sent[: len(trades)], "every trade the venue sent, in order, none skipped"
    assert not any(isinstance(e, Dropped) for e in got)


@venues
def test_a_slow_consumer_with_policy_drop_sees_every_drop_counted(
    venue: Venue, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[list[Event], int, list[str]]:
        async with await fast_mock(venue, truth) as mock:
            client = client_for(venue, mock, policy="drop")
            try:
                await venue.start(client)
                await until(lambda: backlog_full(client), timeout_s=30)
                await until(lambda: client.dropped >= 100, timeout_s=30)  # the reader kept reading
                got = await read_backlog_and_more(client)
                count = sum(isinstance(e, Trade) for e in got)
                return got, client.dropped, await venue.sent_at_least(truth, count)
            finally:
                await client.close()

    got, dropped, sent = asyncio.run(scenario())
    trades = [e.trade_id for e in got if isinstance(e, Trade)]
    markers = [e for e in got if isinstance(e, Dropped)]
    upto = sent[: sent.index(trades[-1]) + 1]
    missing = len(upto) - len(trades)
    assert missing > 0 and markers, "events were dropped, and the consumer was told where"
    assert all(t in upto for t in trades) and trades == sorted(trades, key=upto.index)
    assert missing <= sum(m.count for m in markers) <= dropped
