"""Drive every function of the Alpaca client against the mock's Alpaca venue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AuthError, OrderNotFound
from tickpipe.common.schema import Bar, Event, OrderUpdate, Quote, Trade
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.clients import BookUpdate

E = TypeVar("E", bound=Event)


def client_for(mock: MockExchange, feed: str = "iex", **options: Any) -> AlpacaClient:
    assert mock.alpaca_data_url and mock.alpaca_trading_url and mock.alpaca_rest_url
    return AlpacaClient(
        mock.alpaca_data_url,
        mock.alpaca_trading_url,
        mock.alpaca_rest_url,
        options.pop("api_key", "mock-key"),
        "mock-secret",
        feed=feed,
        backoff=Backoff(base_s=0.01, cap_s=0.05),
        **options,
    )


def run(
    scenario: Callable[[MockExchange, AlpacaClient], Awaitable[None]],
    feed: str = "iex",
    **mock: Any,
) -> None:
    mock.setdefault("alpaca_hours", "always")  # AAPL trades whatever the hour the test runs at

    async def main() -> None:
        async with await start_mock(alpaca_port=0, trades_per_s=40, **mock) as exchange:
            async with client_for(exchange, feed) as client:
                await asyncio.wait_for(scenario(exchange, client), 60)

    asyncio.run(main())


async def next_event(client: AlpacaClient, cls: type[E], test: Callable[[E], bool]) -> E:
    async for event in client:  # the client iterates as process_incoming_data() does
        if isinstance(event, cls) and test(event):
            return event
    raise AssertionError("the client ended before the expected event")


def test_stock_trades_quotes_and_a_market_order_that_fills(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange, client: AlpacaClient) -> None:
        await client.subscribe_to_ticker("AAPL")
        await client.subscribe_to_order_updates()
        trade = await next_event(client, Trade, lambda t: True)
        quote = await next_event(client, Quote, lambda q: True)
        assert trade.symbol == quote.symbol == "AAPL" and trade.venue == "alpaca"
        assert Decimal(quote.bid_price) <= Decimal(quote.ask_price)
        order = await client.place_order("AAPL", "buy", "2", client_order_id="aapl-1")
        assert order.client_order_id == "aapl-1" and order.side == "BUY"
        fill = await next_event(client, OrderUpdate, lambda u: u.status == "FILLED")
        assert fill.client_order_id == "aapl-1" and Decimal(fill.filled_qty) == 2
        assert mock.alpaca is not None
        venue_order = mock.alpaca.broker.by_client_order_id("aapl-1")
        assert (venue_order.status, venue_order.filled_qty) == ("filled", Decimal(2))
        assert mock.alpaca.broker.positions["AAPL"].qty == Decimal(2), "the venue's position"
        # the same client id again: Alpaca refuses a second order, the client answers the first
        again = await client.place_order("AAPL", "buy", "2", client_order_id="aapl-1")
        assert again.order_id == order.order_id and again.status == "FILLED"

    run(scenario, ground_truth_path=str(truth))
    accepted = [
        o for o in read_ground_truth(truth).events("alpaca_order") if o.get("accepted", True)
    ]
    assert [o.get("client_order_id") for o in accepted].count("aapl-1") == 1, accepted


def test_limit_order_rests_is_looked_up_and_cancelled_and_cancel_all() -> None:
    async def scenario(mock: MockExchange, client: AlpacaClient) -> None:
        await client.subscribe_to_order_updates()
        for n in range(3):
            placed = await client.place_order(
                "AAPL", "buy", "1", order_type="LIMIT", price="1.00", client_order_id=f"lim-{n}",
                time_in_force="gtc",
            )  # fmt: skip
            assert placed.status == "NEW" and placed.order_type == "LIMIT"
        assert (await client.order_status("AAPL", "lim-0")).status == "NEW"
        assert sorted(o.client_order_id for o in await client.open_orders("AAPL")) == [
            "lim-0",
            "lim-1",
            "lim-2",
        ]
        cancelled = await client.cancel_order("AAPL", "lim-0")
        assert cancelled.status == "CANCELED"
        update = await next_event(client, OrderUpdate, lambda u: u.status == "CANCELED")
        assert update.client_order_id == "lim-0"
        rest = await client.cancel_all()
        assert sorted(o.client_order_id for o in rest) == ["lim-1", "lim-2"]
        assert await client.open_orders() == []
        assert mock.alpaca is not None
        broker = mock.alpaca.broker
        assert [broker.by_client_order_id(f"lim-{n}").status for n in range(3)] == ["canceled"] * 3
        # time in force: an IOC limit that cannot fill is not left working at the venue
        ioc = await client.place_order(
            "AAPL", "buy", "1", order_type="LIMIT", price="1.00", time_in_force="ioc",
            client_order_id="ioc-1",
        )  # fmt: skip
        assert ioc.client_order_id == "ioc-1"
        await until(lambda: not broker.by_client_order_id("ioc-1").is_open, what="IOC closed")
        assert broker.by_client_order_id("ioc-1").time_in_force == "ioc"
        assert (await client.order_status("AAPL", "ioc-1")).status in ("CANCELED", "EXPIRED")
        with pytest.raises(OrderNotFound):
            await client.order_status("AAPL", "never-placed")

    run(scenario)


def test_crypto_book_bars_and_a_reconnect_that_resubscribes() -> None:
    async def scenario(mock: MockExchange, client: AlpacaClient) -> None:
        await client.subscribe_to_ticker("BTC/USD")
        # The mock has no book to send before the symbol's first trade: changes come first,
        # and the client shows no book until the whole one arrives (after the reconnect here).
        await next_event(client, Trade, lambda t: t.symbol == "BTC/USD")
        assert mock.alpaca is not None
        for conn in list(mock.alpaca.connections.values()):
            await conn.ws.close(code=1011, message=b"test drop")
        whole = await next_event(client, BookUpdate, lambda b: True)
        assert whole.resynced and whole.symbol == "BTC/USD"
        assert client.reconnects == 1 and client.errors == 1 and client.book_changes_skipped > 0
        assert len(whole.bids) > 1 and len(whole.asks) > 1, "the whole book, from the snapshot"
        changed = await next_event(client, BookUpdate, lambda b: not b.resynced)
        assert Decimal(changed.bids[0][0]) < Decimal(changed.asks[0][0])
        await next_event(client, Trade, lambda t: t.symbol == "BTC/USD")

    run(scenario, feed="crypto")


def test_minute_bars_arrive_as_bars() -> None:
    clock_ns = [1_800_000_000_000_000_000]

    def clock() -> int:  # a fast clock: a minute of market passes in well under a second
        clock_ns[0] += 50_000_000
        return clock_ns[0]

    async def scenario(mock: MockExchange, client: AlpacaClient) -> None:
        await client.subscribe_to_ticker("AAPL")
        bar = await next_event(client, Bar, lambda b: b.interval == "1m")
        assert bar.symbol == "AAPL" and Decimal(bar.low) <= Decimal(bar.high)

    run(scenario, clock=clock)


def test_a_refused_key_raises_auth_error() -> None:
    async def main() -> None:
        async with await start_mock(alpaca_port=0) as mock:
            client = client_for(mock, api_key="wrong-key")
            with pytest.raises(AuthError, match="ALPACA_API_KEY"):
                await client.connect_to_websocket()
            with pytest.raises(AuthError):
                await client.authenticate_websocket()
            await client.close()

    asyncio.run(main())
