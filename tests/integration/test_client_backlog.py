"""The embeddable Binance client with a consumer that falls behind, against the mock exchange.

The client's event buffer is bounded (``max_events``; 10,000 by default, 500 here). These tests
let it fill while the consumer does not read, then check what a user relies on: ``close()``
completes, a fatal error reaches the consumer instead of leaving it waiting, and no trade is lost
without a trace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import VenueError
from tickpipe.common.schema import Event, Trade
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.clients import Dropped, Policy

RATE = 500.0  # trades per second and symbol: the buffer fills within a second or two
MAX_EVENTS = 500


class GiveUp(VenueError):
    """The user's own policy decided to stop after a dropped connection."""


class GivingUpClient(BinanceClient):
    """A user's client whose error policy treats any lost connection as fatal."""

    gave_up = False

    def handle_websocket_error(self, error: BaseException) -> float:
        self.gave_up = True
        raise GiveUp(f"giving up after {error}")


def backlog_full(client: BinanceClient) -> bool:
    return bool(client._events.full())


async def started(mock: MockExchange, client: BinanceClient) -> None:
    await client.connect_to_websocket()
    await client.subscribe_to_ticker("BTCUSDT")


def client_for(
    mock: MockExchange, cls: type[BinanceClient] = BinanceClient, **options: Any
) -> BinanceClient:
    return cls(
        mock.ws_url,
        mock.ws_api_url,
        mock.rest_url,
        backoff=Backoff(base_s=0.01),
        max_events=MAX_EVENTS,
        **options,
    )


def test_close_completes_while_the_buffer_is_full() -> None:
    async def scenario() -> None:
        async with await start_mock(binance_port=0, trades_per_s=RATE) as mock:
            client = client_for(mock)
            await started(mock, client)
            await until(lambda: backlog_full(client), timeout_s=30)
            await asyncio.wait_for(client.close(), 10)
            got = [e async for e in client.process_incoming_data()]
            assert got == [], "after close() the iteration ends at once"

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", ["block", "drop"])
def test_a_fatal_error_with_a_full_buffer_reaches_the_consumer(policy: Policy) -> None:
    async def scenario() -> list[Event]:
        async with await start_mock(binance_port=0, trades_per_s=RATE) as mock:
            client = client_for(mock, GivingUpClient, policy=policy)
            assert isinstance(client, GivingUpClient)
            try:
                await started(mock, client)
                await until(lambda: backlog_full(client), timeout_s=30)
                await mock.inject({"type": "drop", "kind": "stream"})
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


def test_a_slow_consumer_loses_no_trade_by_default(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario() -> list[Event]:
        mock = await start_mock(binance_port=0, trades_per_s=RATE, ground_truth_path=str(truth))
        async with mock:
            client = client_for(mock)
            try:
                await started(mock, client)
                await until(lambda: backlog_full(client), timeout_s=30)
                got: list[Event] = []
                # read the whole backlog and some more
                async for event in client.process_incoming_data():
                    got.append(event)
                    if len(got) >= 3 * MAX_EVENTS:
                        break
                return got
            finally:
                await client.close()

    got = asyncio.run(scenario())
    trades = [e.trade_id for e in got if isinstance(e, Trade)]
    sent = [str(r["trade_id"]) for r in read_ground_truth(truth).trades_sent()]
    assert len(trades) > MAX_EVENTS
    assert trades == sent[: len(trades)], "every trade the venue sent, in order, none skipped"


def test_a_slow_consumer_with_policy_drop_sees_every_drop_counted(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[list[Event], int]:
        mock = await start_mock(binance_port=0, trades_per_s=RATE, ground_truth_path=str(truth))
        async with mock:
            client = client_for(mock, policy="drop")
            try:
                await started(mock, client)
                await until(lambda: backlog_full(client), timeout_s=30)
                await until(lambda: client.dropped >= 100, timeout_s=30)  # the reader kept reading
                got: list[Event] = []
                async for event in client.process_incoming_data():
                    got.append(event)
                    if len(got) >= 3 * MAX_EVENTS:
                        break
                return got, client.dropped
            finally:
                await client.close()

    got, dropped = asyncio.run(scenario())
    trades = [e.trade_id for e in got if isinstance(e, Trade)]
    markers = [e for e in got if isinstance(e, Dropped)]
    sent = [str(r["trade_id"]) for r in read_ground_truth(truth).trades_sent()]
    upto = sent[: sent.index(trades[-1]) + 1]
    missing = len(upto) - len(trades)
    assert missing > 0 and markers, "events were dropped, and the consumer was told where"
    assert all(t in upto for t in trades) and trades == sorted(trades, key=upto.index)
    assert missing <= sum(m.count for m in markers) <= dropped
