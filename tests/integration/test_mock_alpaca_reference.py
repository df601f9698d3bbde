"""Integration test: alpaca-py, unmodified, against the Alpaca mock's clock, calendar and REST.

TradingClient and the historical data clients reach the mock over TLS, trusting its CA with
``REQUESTS_CA_BUNDLE`` as requests users do. The mock's clock is injected, so each test
chooses the time of day: the market calendar decides whether AAPL trades and whether a DAY
order is held, filled or expired, as Alpaca does.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.mock_support import ManualClock, wait_for
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.alpaca import calendar
from tickpipe.mock_ws.tls import generate

KEY, SECRET = "mock-key", "mock-secret"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def utc_ns(text: str) -> int:
    moment = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
    return int(moment.timestamp()) * 1_000_000_000


@asynccontextmanager
async def alpaca_mock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> AsyncIterator[MockExchange]:
    files = generate(tmp_path / "tls", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(files.ca))  # requests trusts the mock's CA
    mock = await start_mock(alpaca_port=0, tls=files, api_key=KEY, api_secret=SECRET, **kwargs)
    try:
        yield mock
    finally:
        await mock.close()


def close(*clients: Any) -> None:
    """Close the SDK clients' HTTP sessions (alpaca-py has no close(); keep-alive sockets)."""
    for client in clients:
        client._session.close()


def trading(mock: MockExchange) -> Any:
    from alpaca.trading.client import TradingClient

    return TradingClient(KEY, SECRET, paper=True, url_override=mock.alpaca_rest_url)


def test_clock_and_calendar_follow_the_injected_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alpaca.trading.requests import GetCalendarRequest

    async def scenario() -> None:
        clock = ManualClock(utc_ns("2026-01-03T12:00:00"))  # a Saturday
        async with alpaca_mock(tmp_path, monkeypatch, clock=clock) as mock:
            client = trading(mock)
            weekend = await asyncio.to_thread(client.get_clock)
            clock.ns = utc_ns("2026-01-05T15:00:00")  # Monday 10:00 in New York
            monday = await asyncio.to_thread(client.get_clock)
            request = GetCalendarRequest(
                start=datetime.date(2026, 1, 1), end=datetime.date(2026, 1, 9)
            )
            days = await asyncio.to_thread(client.get_calendar, request)
            close(client)
        assert weekend.is_open is False
        assert weekend.next_open == datetime.datetime.fromisoformat("2026-01-05T09:30:00-05:00")
        assert monday.is_open is True
        assert monday.next_close == datetime.datetime.fromisoformat("2026-01-05T16:00:00-05:00")
        # New Year's Day and the weekend are not trading days.
        assert [d.date for d in days] == [datetime.date(2026, 1, d) for d in (2, 5, 6, 7, 8, 9)]
        assert days[0].open.hour == 9 and days[0].close.hour == 16
        assert calendar.is_open(clock.ns)

    asyncio.run(scenario())


def test_stock_day_orders_are_held_while_closed_fill_at_the_open_and_expire_at_the_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    async def scenario() -> None:
        clock = ManualClock(utc_ns("2026-01-05T23:45:00"))  # Monday 18:45 in New York: closed
        async with alpaca_mock(tmp_path, monkeypatch, clock=clock, trades_per_s=20.0) as mock:
            assert mock.alpaca is not None
            client, market = trading(mock), mock.alpaca.market
            order = await asyncio.to_thread(
                client.submit_order,
                MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY,
                                   time_in_force=TimeInForce.DAY),
            )  # fmt: skip
            clock.ns += 30_000_000_000
            await wait_for(lambda: bool(market.history_trades("FAKEPACA")), "the test stream")
            held = await asyncio.to_thread(client.get_order_by_id, order.id)
            assert str(held.status.value) == "accepted"
            assert market.history_trades("AAPL") == []  # no IEX trades after hours

            clock.ns = utc_ns("2026-01-06T14:31:00")  # Tuesday 09:31: open
            broker = mock.alpaca.broker
            await wait_for(lambda: broker.get(str(order.id)).status == "filled", "the open")
            await wait_for(lambda: bool(market.history_trades("AAPL")), "AAPL trades")
            resting = await asyncio.to_thread(
                client.submit_order,
                LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, limit_price=10,
                                  time_in_force=TimeInForce.DAY),
            )  # fmt: skip
            working = await asyncio.to_thread(client.get_order_by_id, resting.id)
            assert str(working.status.value) == "new"  # in session: working at once
            clock.ns = utc_ns("2026-01-06T21:00:01")  # 16:00:01: closed
            await wait_for(lambda: broker.get(str(resting.id)).status == "expired", "the close")
            filled = await asyncio.to_thread(client.get_order_by_id, order.id)
            position = await asyncio.to_thread(client.get_open_position, "AAPL")
            close(client)
        assert str(filled.status.value) == "filled" and filled.filled_qty == "2"
        assert position.qty == "2"

    asyncio.run(scenario())


def test_extended_hours_orders_work_in_the_pre_market_and_after_hours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alpaca.common.exceptions import APIError
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

    def limit(price: float, *, extended: bool) -> LimitOrderRequest:
        return LimitOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.BUY, limit_price=price,
            time_in_force=TimeInForce.DAY, extended_hours=extended,
        )  # fmt: skip

    async def scenario() -> None:
        clock = ManualClock(utc_ns("2026-01-06T12:30:00"))  # Tuesday 07:30 in New York
        async with alpaca_mock(tmp_path, monkeypatch, clock=clock, trades_per_s=20.0) as mock:
            assert mock.alpaca is not None
            client, market, broker = trading(mock), mock.alpaca.market, mock.alpaca.broker
            last = float(broker.market.last_price("AAPL"))
            with pytest.raises(APIError) as refused:
                await asyncio.to_thread(
                    client.submit_order,
                    MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY,
                                       time_in_force=TimeInForce.DAY, extended_hours=True),
                )  # fmt: skip
            assert refused.value.status_code == 422
            assert "extended hours order must be DAY limit orders" in str(refused.value)
            early = await asyncio.to_thread(client.submit_order, limit(last * 2, extended=True))
            regular = await asyncio.to_thread(client.submit_order, limit(last * 2, extended=False))
            await wait_for(lambda: broker.get(str(early.id)).status == "filled", "pre-market")
            assert broker.get(str(regular.id)).status == "accepted"  # held for the open
            clock.ns += 5_000_000_000
            await wait_for(lambda: bool(market.history_trades("FAKEPACA")), "the test stream")
            assert market.history_trades("AAPL") == []  # IEX prints nothing before 08:00

            clock.ns = utc_ns("2026-01-06T13:30:00")  # 08:30: IEX's pre-market prints
            await wait_for(lambda: bool(market.history_trades("AAPL")), "pre-market trades")
            assert broker.get(str(regular.id)).status == "accepted"  # still not its hours
            clock.ns = utc_ns("2026-01-06T14:31:00")  # 09:31: the open starts it
            await wait_for(lambda: broker.get(str(regular.id)).status == "filled", "the open")

            clock.ns = utc_ns("2026-01-06T21:30:00")  # 16:30: after-hours
            late = await asyncio.to_thread(client.submit_order, limit(last / 2, extended=True))
            held = await asyncio.to_thread(client.submit_order, limit(last / 2, extended=False))
            await wait_for(lambda: broker.get(str(late.id)).status == "new", "after-hours")
            assert broker.get(str(held.id)).status == "accepted"
            seen = len(market.history_trades("FAKEPACA"))
            clock.ns = utc_ns("2026-01-07T00:59:30")  # 19:59:30: the after-hours still runs
            await wait_for(lambda: len(market.history_trades("FAKEPACA")) > seen, "a step")
            assert broker.get(str(late.id)).status == "new"
            clock.ns = utc_ns("2026-01-07T01:00:01")  # 20:00:01: the extended DAY order ends
            await wait_for(lambda: broker.get(str(late.id)).status == "expired", "20:00")
            assert broker.get(str(held.id)).status == "accepted"  # tomorrow's order
            close(client)

    asyncio.run(scenario())


def test_assets_positions_closing_and_activities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alpaca.common.exceptions import APIError
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.requests import ClosePositionRequest, MarketOrderRequest

    async def scenario() -> None:
        async with alpaca_mock(tmp_path, monkeypatch, trades_per_s=20.0) as mock:
            assert mock.alpaca is not None
            broker, client = mock.alpaca.broker, trading(mock)
            asset = await asyncio.to_thread(client.get_asset, "AAPL")
            assert (asset.symbol, str(asset.asset_class.value), asset.tradable) == (
                "AAPL", "us_equity", True,
            )  # fmt: skip
            with pytest.raises(APIError) as unknown:
                await asyncio.to_thread(client.get_asset, "NOPE")
            assert unknown.value.status_code == 404
            await asyncio.to_thread(
                client.submit_order,
                MarketOrderRequest(symbol="FAKEPACA", qty=3, side=OrderSide.BUY,
                                   time_in_force=TimeInForce.DAY),
            )  # fmt: skip
            held = await asyncio.to_thread(client.get_open_position, "FAKEPACA")
            assert held.qty == "3"
            closing = await asyncio.to_thread(
                client.close_position, "FAKEPACA", ClosePositionRequest(qty="1")
            )
            assert str(closing.side.value) == "sell" and closing.qty == "1"
            after = await asyncio.to_thread(client.get_open_position, "FAKEPACA")
            assert after.qty == "2" and broker.positions["FAKEPACA"].qty == 2
            activities = await asyncio.to_thread(client.get, "/account/activities")
            await asyncio.to_thread(client.close_all_positions)
            with pytest.raises(APIError) as flat:
                await asyncio.to_thread(client.get_open_position, "FAKEPACA")
            assert flat.value.status_code == 404
            close(client)
        assert broker.positions["FAKEPACA"].qty == 0
        fills = [a for a in broker.activities if a["symbol"] == "FAKEPACA"]
        assert activities == list(reversed(fills[:2]))  # newest first, before the close-all
        assert [(a["side"], a["qty"]) for a in fills] == [
            ("buy", "3"),
            ("sell", "1"),
            ("sell", "2"),
        ]

    asyncio.run(scenario())


def test_latest_and_snapshot_market_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alpaca.data.historical import CryptoHistoricalDataClient, StockHistoricalDataClient
    from alpaca.data.requests import (
        CryptoLatestTradeRequest,
        StockLatestQuoteRequest,
        StockLatestTradeRequest,
        StockSnapshotRequest,
    )

    async def scenario() -> None:
        clock = ManualClock(utc_ns("2026-01-06T15:00:00"))  # Tuesday 10:00 in New York
        async with alpaca_mock(tmp_path, monkeypatch, clock=clock, trades_per_s=20.0) as mock:
            assert mock.alpaca is not None and mock.alpaca_rest_url is not None
            market = mock.alpaca.market

            def traded() -> bool:
                if all(market.latest(s, "trade") for s in ("AAPL", "BTC/USD")):
                    return True
                clock.ns += 500_000_000
                return False

            await wait_for(traded, "trades")
            stocks = StockHistoricalDataClient(KEY, SECRET, url_override=mock.alpaca_rest_url)
            crypto = CryptoHistoricalDataClient(KEY, SECRET, url_override=mock.alpaca_rest_url)
            trade = await asyncio.to_thread(
                stocks.get_stock_latest_trade, StockLatestTradeRequest(symbol_or_symbols="AAPL")
            )
            quote = await asyncio.to_thread(
                stocks.get_stock_latest_quote, StockLatestQuoteRequest(symbol_or_symbols="AAPL")
            )
            snapshot = await asyncio.to_thread(
                stocks.get_stock_snapshot, StockSnapshotRequest(symbol_or_symbols="AAPL")
            )
            coin = await asyncio.to_thread(
                crypto.get_crypto_latest_trade,
                CryptoLatestTradeRequest(symbol_or_symbols="BTC/USD"),
            )
            close(stocks, crypto)
            last_aapl = market.latest("AAPL", "trade")
            last_quote = market.latest("AAPL", "quote")
            last_coin = market.latest("BTC/USD", "trade")
        assert last_aapl is not None and last_quote is not None and last_coin is not None
        assert (trade["AAPL"].price, trade["AAPL"].size) == (last_aapl["p"], last_aapl["s"])
        assert trade["AAPL"].id == last_aapl["i"]
        assert (quote["AAPL"].bid_price, quote["AAPL"].ask_price) == (
            last_quote["bp"], last_quote["ap"],
        )  # fmt: skip
        assert snapshot["AAPL"].latest_trade.price == last_aapl["p"]
        assert Decimal(str(coin["BTC/USD"].price)) == Decimal(str(last_coin["p"]))

    asyncio.run(scenario())
