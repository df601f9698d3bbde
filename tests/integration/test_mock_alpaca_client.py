"""Integration test: the unmodified alpaca-py SDK against the in-process Alpaca mock.

StockDataStream (msgpack, always) receives FAKEPACA trades and quotes from ``/v2/test`` and raw
AAPL trades from ``/v2/iex``; TradingClient places, cancels and fills orders over REST, and
TradingStream receives their ``trade_updates``. The SDK's blocking calls run in threads and
every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import msgpack
import pytest

from tests.waits import until
from tickpipe.mock_ws import MockExchange, start_mock

KEY, SECRET = "mock-key", "mock-secret"


def _name(value: Any) -> str:
    """Return an enum's value or the string itself (pydantic may keep either)."""
    return str(getattr(value, "value", value))


def _listening(mock: MockExchange) -> bool:
    assert mock.alpaca is not None
    return any(
        c.trading is not None and c.trading.listening("trade_updates")
        for c in mock.alpaca.connections.values()
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # alpaca-py uses websockets.legacy
def test_alpaca_py_streams_and_trading_client() -> None:
    from alpaca.common.exceptions import APIError
    from alpaca.data.live import StockDataStream
    from alpaca.data.models import Quote, Trade
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, TimeInForce
    from alpaca.trading.models import TradeUpdate
    from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest
    from alpaca.trading.stream import TradingStream

    trades: list[Trade] = []
    quotes: list[Quote] = []
    raw: list[dict[str, Any]] = []
    updates: list[TradeUpdate] = []

    async def on_trade(trade: Trade) -> None:
        trades.append(trade)

    async def on_quote(quote: Quote) -> None:
        quotes.append(quote)

    async def on_raw(message: dict[str, Any]) -> None:
        raw.append(message)

    async def on_update(update: TradeUpdate) -> None:
        updates.append(update)

    def events_of(order_id: str) -> list[str]:
        return [_name(u.event) for u in updates if str(u.order.id) == order_id]

    async def scenario() -> None:
        mock = await start_mock(alpaca_hours="always", alpaca_port=0, trades_per_s=20.0)
        assert mock.alpaca_data_url is not None and mock.alpaca_rest_url is not None
        data = StockDataStream(KEY, SECRET, url_override=f"{mock.alpaca_data_url}/v2/test")
        data.subscribe_trades(on_trade, "FAKEPACA")
        data.subscribe_quotes(on_quote, "FAKEPACA")
        iex = StockDataStream(
            KEY, SECRET, raw_data=True, url_override=f"{mock.alpaca_data_url}/v2/iex"
        )
        iex.subscribe_trades(on_raw, "AAPL")
        stream = TradingStream(KEY, SECRET, paper=True, url_override=mock.alpaca_trading_url)
        stream.subscribe_trade_updates(on_update)
        threads = [threading.Thread(target=s.run, daemon=True) for s in (data, iex, stream)]
        for thread in threads:
            thread.start()
        client = TradingClient(KEY, SECRET, paper=True, url_override=mock.alpaca_rest_url)
        try:
            await until(lambda: len(trades) >= 3 and len(quotes) >= 3, 6, "FAKEPACA data")
            assert {t.symbol for t in trades} == {"FAKEPACA"}
            assert mock.alpaca is not None
            paths = {c.path for c in mock.alpaca.connections.values() if c.use_msgpack}
            assert {"/v2/test", "/v2/iex"} <= paths  # alpaca-py asked for msgpack frames
            assert trades[0].timestamp.tzinfo is not None and trades[0].price > 0
            assert quotes[0].ask_price > quotes[0].bid_price
            await until(lambda: len(raw) >= 1, 6, "raw AAPL trades")
            assert raw[0]["S"] == "AAPL" and isinstance(raw[0]["t"], msgpack.Timestamp)

            await until(lambda: _listening(mock), 5, "trading stream listening")
            client_id = f"it-{uuid.uuid4()}"
            limit = LimitOrderRequest(
                symbol="FAKEPACA",
                qty=1,
                side=OrderSide.BUY,
                time_in_force=TimeInForce.DAY,
                limit_price=1.0,
                client_order_id=client_id,
            )
            order = await asyncio.to_thread(client.submit_order, limit)
            order_id = str(order.id)  # type: ignore[union-attr]
            await asyncio.to_thread(client.cancel_order_by_id, order_id)
            await until(lambda: "canceled" in events_of(order_id), 5, "canceled update")
            assert events_of(order_id) == ["new", "canceled"]
            fetched = await asyncio.to_thread(client.get_order_by_client_id, client_id)
            assert _name(fetched.status) == "canceled"  # type: ignore[union-attr]
            with pytest.raises(APIError) as duplicate:
                await asyncio.to_thread(client.submit_order, limit)
            assert duplicate.value.status_code == 422

            market = MarketOrderRequest(
                symbol="FAKEPACA", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
            filled = await asyncio.to_thread(client.submit_order, market)
            filled_id = str(filled.id)  # type: ignore[union-attr]
            await until(lambda: "fill" in events_of(filled_id), 5, "fill update")
            fill = next(u for u in updates if _name(u.event) == "fill")
            assert fill.qty == 2 and fill.position_qty == 2 and fill.price is not None
            positions = await asyncio.to_thread(client.get_all_positions)
            assert [(p.symbol, p.qty) for p in positions] == [("FAKEPACA", "2")]  # type: ignore[union-attr]
        finally:
            for s in (data, iex, stream):
                await asyncio.to_thread(s.stop)
            await mock.close()
            for thread in threads:
                await asyncio.to_thread(thread.join, 8)
        assert not any(t.is_alive() for t in threads)

    asyncio.run(asyncio.wait_for(scenario(), 19))
