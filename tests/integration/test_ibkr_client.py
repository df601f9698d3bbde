"""The embeddable IBKR client against the gateway mock: events out, a dropped socket healed."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tickpipe.common.schema import Event, OrderUpdate, Quote, Trade
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.venues.ibkr.client import IbkrClient


async def events_until(client: IbkrClient, wanted: Any, timeout_s: float = 10) -> list[Event]:
    seen: list[Event] = []

    async def read() -> None:
        async for event in client.process_incoming_data():
            seen.append(event)
            if wanted(seen):
                return

    await asyncio.wait_for(read(), timeout_s)
    return seen


async def place_market_order(mock: MockExchange) -> None:
    base = mock.ibkr_rest_url
    order = {
        "conid": 265598,
        "cOID": "ext-1",
        "orderType": "MKT",
        "side": "BUY",
        "quantity": 3,
        "tif": "DAY",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/iserver/account/DU1234567/orders", json={"orders": [order]}
        ) as r:
            asked = await r.json()
        async with http.post(
            f"{base}/iserver/reply/{asked[0]['id']}", json={"confirmed": True}
        ) as r:
            assert r.status == 200


def test_client_yields_quotes_trades_and_order_updates_and_heals_a_drop() -> None:
    async def main() -> None:
        mock = await start_mock(
            ibkr_port=0, trades_per_s=40.0, ibkr_options={"md_interval_s": 0.05}
        )
        assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
        try:
            async with IbkrClient(mock.ibkr_rest_url, mock.ibkr_ws_url) as client:
                await client.subscribe_to_ticker("AAPL")
                await client.subscribe_to_order_updates()
                await client.authenticate_websocket()
                seen = await events_until(
                    client,
                    lambda s: (
                        any(isinstance(e, Trade) for e in s)
                        and any(isinstance(e, Quote) for e in s)
                    ),
                )
                assert all(e.symbol == "AAPL" for e in seen if isinstance(e, Trade | Quote))
                await place_market_order(mock)
                updates = await events_until(
                    client,
                    lambda s: any(isinstance(e, OrderUpdate) and e.status == "FILLED" for e in s),
                )
                filled = [e for e in updates if isinstance(e, OrderUpdate) and e.status == "FILLED"]
                assert filled[0].client_order_id == "ext-1" and filled[0].filled_qty == "3"
                await mock.inject({"type": "drop", "path": "/v1/api/ws"})
                after = await events_until(
                    client, lambda s: any(isinstance(e, Trade) for e in s), timeout_s=20
                )
                assert after and client.errors >= 1, "the drop was not noticed"
        finally:
            await mock.close()

    asyncio.run(main())
