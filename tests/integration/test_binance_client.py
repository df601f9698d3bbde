"""Drive every function of the Binance client against the mock exchange: data, books, orders."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import OrderNotFound, OrderRejected
from tickpipe.common.schema import Bar, Event, OrderUpdate, Trade
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.clients import BookUpdate

KEY, SECRET = "client-key", "client-secret"
E = TypeVar("E", bound=Event)


def run(scenario: Callable[[MockExchange, BinanceClient], Awaitable[None]], **mock: Any) -> None:
    async def main() -> None:
        exchange = await start_mock(
            binance_port=0, trades_per_s=20, api_key=KEY, api_secret=SECRET, **mock
        )
        async with exchange:
            client = BinanceClient(
                exchange.ws_url,
                exchange.ws_api_url,
                exchange.rest_url,
                KEY,
                SECRET,
                channels=("trade", "depth@100ms", "kline_1s"),
                backoff=Backoff(base_s=0.01, cap_s=0.05),
            )
            async with client:
                await asyncio.wait_for(scenario(exchange, client), 60)

    asyncio.run(main())


async def next_event(client: BinanceClient, cls: type[E], test: Callable[[E], bool]) -> E:
    """Read events until one of ``cls`` passes ``test`` (bounded by the caller's timeout)."""
    async for event in client:  # the client iterates as process_incoming_data() does
        if isinstance(event, cls) and test(event):
            return event
    raise AssertionError("the client ended before the expected event")


def mid(book: BookUpdate) -> Decimal:
    return (Decimal(book.bids[0][0]) + Decimal(book.asks[0][0])) / 2


def test_market_order_fills_and_its_updates_arrive(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_order_updates()
        order = await client.place_order("BTCUSDT", "BUY", "0.002", client_order_id="mkt-1")
        assert (order.client_order_id, order.status, order.filled_qty) == (
            "mkt-1",
            "FILLED",
            "0.00200000",
        )
        update = await next_event(client, OrderUpdate, lambda u: u.status == "FILLED")
        assert update.client_order_id == "mkt-1" and Decimal(update.filled_qty) == Decimal("0.002")
        venue_order = mock.engine.find(client_order_id="mkt-1")
        assert (venue_order.status, venue_order.executed_qty) == ("FILLED", Decimal("0.002"))

    run(scenario, ground_truth_path=str(truth))
    assert [o["client_order_id"] for o in read_ground_truth(truth).orders()] == ["mkt-1"]


def test_limit_order_rests_is_looked_up_and_cancelled() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_ticker("BTCUSDT")
        await client.subscribe_to_order_updates()
        book = await next_event(client, BookUpdate, lambda b: bool(b.bids and b.asks))
        far = f"{(mid(book) * Decimal('0.5')).quantize(Decimal('0.01'))}"
        placed = await client.place_order(
            "BTCUSDT", "BUY", "0.001", order_type="LIMIT", price=far, client_order_id="lim-1"
        )
        assert placed.status == "NEW" and placed.price.startswith(far.split(".")[0])
        # the id of an open order again: the venue refuses a duplicate, the client answers it
        again = await client.place_order(
            "BTCUSDT", "BUY", "0.001", order_type="LIMIT", price=far, client_order_id="lim-1"
        )
        assert again.order_id == placed.order_id
        assert (await client.order_status("BTCUSDT", "lim-1")).status == "NEW"
        assert [o.client_order_id for o in await client.open_orders("BTCUSDT")] == ["lim-1"]
        cancelled = await client.cancel_order("BTCUSDT", "lim-1")
        assert cancelled.status == "CANCELED"
        assert mock.engine.find(client_order_id="lim-1").status == "CANCELED"
        assert [o.client_order_id for o in mock.engine.orders].count("lim-1") == 1, "placed once"
        update = await next_event(client, OrderUpdate, lambda u: u.status == "CANCELED")
        assert update.client_order_id == "lim-1"
        with pytest.raises(OrderNotFound):
            await client.cancel_order("BTCUSDT", "lim-1")
        with pytest.raises(OrderNotFound):
            await client.order_status("BTCUSDT", "never-placed")

    run(scenario)


def test_cancel_all_cancels_every_open_order_and_ioc_does_not_rest() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_ticker("ETHUSDT")
        book = await next_event(client, BookUpdate, lambda b: bool(b.bids and b.asks))
        low = f"{(mid(book) * Decimal('0.5')).quantize(Decimal('0.01'))}"
        for n in range(3):
            await client.place_order(
                "ETHUSDT", "BUY", "0.01", order_type="LIMIT", price=low, client_order_id=f"all-{n}"
            )
        ioc = await client.place_order(
            "ETHUSDT", "BUY", "0.01", order_type="LIMIT", price=low, time_in_force="IOC"
        )
        assert ioc.status == "EXPIRED"
        cancelled = await client.cancel_all("ETHUSDT")
        assert sorted(o.client_order_id for o in cancelled) == ["all-0", "all-1", "all-2"]
        assert all(o.status == "CANCELED" for o in cancelled)
        assert await client.open_orders() == [] and mock.engine.open_orders() == []
        assert mock.engine.find(client_order_id=ioc.client_order_id).status == "EXPIRED"
        with pytest.raises(OrderRejected):
            await client.place_order("ETHUSDT", "BUY", "-1")

    run(scenario)


def test_an_unanswered_order_is_settled_by_its_client_id(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        client._api.request_timeout_s = 0.5
        await mock.inject({"type": "order_error", "mode": "lost", "kind": "api"})
        order = await client.place_order("BTCUSDT", "SELL", "0.001", client_order_id="lost-1")
        assert order.status == "FILLED" and order.client_order_id == "lost-1"

    run(scenario, ground_truth_path=str(truth))
    orders = read_ground_truth(truth).orders()
    assert len(orders) == 1, orders  # looked up, never sent twice


def test_a_rate_limited_request_waits_and_goes_through() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await mock.inject({"type": "rate_limit", "scope": "ws_api", "retry_after": 1})
        order = await client.place_order("BTCUSDT", "BUY", "0.001")
        assert order.status == "FILLED"
        assert client.rate_limit_waits >= 1

    run(scenario)


def test_book_is_kept_from_snapshot_and_diffs_and_resynced_after_a_gap() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_ticker("BTCUSDT")
        first = await next_event(client, BookUpdate, lambda b: True)
        assert first.resynced, "the first book comes from a snapshot"
        live = await next_event(client, BookUpdate, lambda b: not b.resynced)
        assert Decimal(live.bids[0][0]) < Decimal(live.asks[0][0])
        assert int(live.update_id) > int(first.update_id)
        await mock.inject({"type": "depth_gap", "symbol": "BTCUSDT"})
        again = await next_event(client, BookUpdate, lambda b: b.resynced)
        assert int(again.update_id) > int(live.update_id)
        assert client.books["BTCUSDT"].gaps == 1
        bar = await next_event(client, Bar, lambda b: b.final)
        assert bar.interval == "1s" and Decimal(bar.low) <= Decimal(bar.high)

    run(scenario)


def test_client_reconnects_and_rebuilds_its_book() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_ticker("ETHUSDT")
        await next_event(client, BookUpdate, lambda b: not b.resynced)
        await mock.inject({"type": "drop", "kind": "stream"})
        rebuilt = await next_event(client, BookUpdate, lambda b: b.resynced)
        assert rebuilt.symbol == "ETHUSDT" and client.reconnects == 1 and client.errors == 1

    run(scenario)


def test_a_malformed_frame_is_counted_and_skipped() -> None:
    async def scenario(mock: MockExchange, client: BinanceClient) -> None:
        await client.subscribe_to_ticker("BTCUSDT", channels=("trade",))
        first = await next_event(client, Trade, lambda t: True)
        await mock.inject({"type": "malformed", "replace": True, "kind": "stream"})
        later = await next_event(client, Trade, lambda t: int(t.trade_id) > int(first.trade_id) + 3)
        assert client.malformed == 1 and client.errors == 0 and later.symbol == "BTCUSDT"

    run(scenario)
