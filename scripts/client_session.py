"""Run the embeddable venue clients through a real session against the mock; log JSON lines.

Each client (Binance, Alpaca, IBKR) subscribes, trades (a market order, a limit order cancelled
by its client id), has an order rejected, loses its market-data connection and reconnects; the
Binance and IBKR ones also meet a rate-limit refusal and wait. Every step is a log line on
stdout (``scripts/collect_logs.sh`` keeps them in ``docs/logs/clients.log``); the key pairs
never appear in them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from decimal import Decimal

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import OrderRejected
from tickpipe.common.logs import setup_logging
from tickpipe.common.schema import Event, OrderUpdate, Trade
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.clients import BookUpdate, OrderState, VenueClient
from tickpipe.venues.ibkr.client import IbkrClient
from tickpipe.venues.ibkr.pacing import RestBudget

KEY, SECRET = "session-key-0001", "session-secret-0001"
log = logging.getLogger("tickpipe.client.session")


async def until(client: VenueClient, test: Callable[[Event], bool]) -> Event:
    async for event in client.process_incoming_data():
        if test(event):
            return event
    raise RuntimeError("the client ended first")


def answered(what: str, order: OrderState) -> None:
    log.info(
        what,
        extra={
            "venue": order.venue,
            "client_order_id": order.client_order_id,
            "status": order.status,
            "filled_qty": order.filled_qty,
        },
    )


async def subscribed(client: VenueClient, symbol: str, shown: str) -> Trade:
    """Subscribe ``symbol`` and the order updates; return the first trade."""
    await client.subscribe_to_ticker(symbol)
    await client.subscribe_to_order_updates()
    log.info("subscribed", extra={"venue": client.venue, shown: getattr(client, shown)})
    trade = await until(client, lambda e: isinstance(e, Trade))
    assert isinstance(trade, Trade)
    return trade


async def market_then_cancelled_limit(
    client: VenueClient, symbol: str, qty: str, last_price: str, below: str, cid: str
) -> None:
    """A market buy, then a limit buy ``below`` x the last price, cancelled by its client id."""
    answered("market order", await client.place_order(symbol, "BUY", qty))
    low = str((Decimal(last_price) * Decimal(below)).quantize(Decimal("0.01")))
    answered(
        "limit order",
        await client.place_order(
            symbol, "BUY", qty, order_type="LIMIT", price=low, client_order_id=cid
        ),
    )
    answered("cancelled", await client.cancel_order(symbol, cid))


async def binance(mock: MockExchange) -> None:
    client = BinanceClient(
        mock.ws_url, mock.ws_api_url, mock.rest_url, KEY, SECRET,
        channels=("trade", "depth@100ms"), backoff=Backoff(base_s=0.2, cap_s=1.0),
    )  # fmt: skip
    async with client:
        trade = await subscribed(client, "BTCUSDT", "streams")
        book = await until(client, lambda e: isinstance(e, BookUpdate))
        log.info("book ready", extra={"venue": "binance", "best_bid": book.bids[0][0]})  # type: ignore[attr-defined]
        await market_then_cancelled_limit(client, "BTCUSDT", "0.001", trade.price, "0.9", "s-lim-1")
        await until(client, lambda e: isinstance(e, OrderUpdate) and e.status == "CANCELED")
        await mock.inject({"type": "rate_limit", "scope": "ws_api", "retry_after": 1})
        answered(
            "market order after a rate limit", await client.place_order("BTCUSDT", "SELL", "0.001")
        )
        try:
            await client.place_order("BTCUSDT", "BUY", "0.001", order_type="LIMIT", price="-1")
        except OrderRejected as exc:
            log.warning("order rejected", extra={"venue": "binance", "error": str(exc)})
        await mock.inject({"type": "drop", "kind": "stream"})
        await until(client, lambda e: isinstance(e, BookUpdate) and e.resynced)
        log.info(
            "book rebuilt after the reconnect",
            extra={"venue": "binance", "reconnects": client.reconnects},
        )


async def alpaca(mock: MockExchange) -> None:
    assert mock.alpaca is not None and mock.alpaca_data_url and mock.alpaca_trading_url
    assert mock.alpaca_rest_url
    client = AlpacaClient(
        mock.alpaca_data_url, mock.alpaca_trading_url, mock.alpaca_rest_url, KEY, SECRET,
        backoff=Backoff(base_s=0.2, cap_s=1.0),
    )  # fmt: skip
    async with client:
        trade = await subscribed(client, "AAPL", "symbols")
        await market_then_cancelled_limit(client, "AAPL", "1", trade.price, "0.9", "s-lim-2")
        await until(client, lambda e: isinstance(e, OrderUpdate) and e.status == "CANCELED")
        mock.alpaca.broker.reject_next += 1  # accepted, then rejected on the trading stream
        answered("market order", await client.place_order("AAPL", "buy", "1"))
        rejected = await until(
            client, lambda e: isinstance(e, OrderUpdate) and e.status == "REJECTED"
        )
        log.warning("order rejected", extra={"venue": "alpaca", "update": str(rejected)})
        for conn in list(mock.alpaca.connections.values()):
            await conn.ws.close(code=1011, message=b"dropped")
        await until(client, lambda e: isinstance(e, Trade) and client.reconnects > 0)
        log.info(
            "trading again after the reconnect",
            extra={"venue": "alpaca", "reconnects": client.reconnects},
        )


async def ibkr(mock: MockExchange) -> None:
    assert mock.ibkr_rest_url and mock.ibkr_ws_url
    client = IbkrClient(
        mock.ibkr_rest_url, mock.ibkr_ws_url, allow_questions=("o10151",),
        budget=RestBudget(penalty_s=3.0),  # the gateway's own penalty is minutes long
        backoff=Backoff(base_s=0.2, cap_s=1.0),
    )  # fmt: skip
    async with client:
        trade = await subscribed(client, "AAPL", "symbols")
        # 2 % below: within the gateway's 3 % price limit, which would ask a question (o163)
        await market_then_cancelled_limit(client, "AAPL", "1", trade.price, "0.98", "s-lim-3")
        await mock.inject({"type": "rate_limit", "scope": "rest", "duration": 1})
        answered("market order after a rate limit", await client.place_order("AAPL", "SELL", "1"))
        try:
            await client.place_order("AAPL", "BUY", "0.5")  # not a whole share
        except OrderRejected as exc:
            log.warning("order rejected", extra={"venue": "ibkr", "error": str(exc)})
        await mock.inject({"type": "drop", "path": "/v1/api/ws"})
        await until(client, lambda e: isinstance(e, Trade) and client.reconnects > 0)
        log.info(
            "trading again after the reconnect",
            extra={"venue": "ibkr", "reconnects": client.reconnects},
        )


async def main() -> None:
    mock = await start_mock(
        binance_port=0, alpaca_port=0, ibkr_port=0, trades_per_s=20, api_key=KEY,
        api_secret=SECRET,
    )  # fmt: skip
    async with mock:
        await asyncio.wait_for(binance(mock), 120)
        await asyncio.wait_for(alpaca(mock), 120)
        await asyncio.wait_for(ibkr(mock), 120)


if __name__ == "__main__":
    setup_logging("client", "session", secrets=[KEY, SECRET], stream=sys.stdout)
    logging.getLogger("tickpipe.mock_ws").setLevel("WARNING")  # the mock's own view: its log
    asyncio.run(main())
