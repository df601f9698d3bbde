"""The embeddable IBKR client against the gateway mock: events, orders, iteration, TLS, a drop."""

from __future__ import annotations

import asyncio
import datetime
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.waits import until
from tickpipe.common.errors import ConfigError, OrderNotFound
from tickpipe.common.schema import Event, OrderUpdate, Quote, Trade
from tickpipe.common.tls import trust_ca_file
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock
from tickpipe.mock_ws.tls import generate
from tickpipe.venues.ibkr.client import IbkrClient
from tickpipe.venues.ibkr.orders import QuestionDeclined
from tickpipe.venues.ibkr.pacing import RestBudget


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


FACTOR = 10


class FastClock:
    """The mock's and the client's clock, ten times real time: the gateway's 5 s pace of
    ``/iserver/account/orders`` (kept by both sides) passes in half a second."""

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.t0 = time.monotonic_ns()

    def __call__(self) -> int:
        return self.start_ns + (time.monotonic_ns() - self.t0) * FACTOR


class FastBudget(RestBudget):
    """The client's pacing on :class:`FastClock`: it sleeps its delays (clock time) in real
    seconds, so each is divided by the clock's factor."""

    def delay_ns(self, method: str, path: str, now_ns: int) -> int:
        return super().delay_ns(method, path, now_ns) // FACTOR

    def endpoint_delay_ns(self, method: str, path: str, now_ns: int) -> int:
        return super().endpoint_delay_ns(method, path, now_ns) // FACTOR

    def refused(self, now_ns: int, method: str = "", path: str = "") -> float:
        return super().refused(now_ns, method, path) / FACTOR


def fast_client(mock: MockExchange, clock: FastClock) -> IbkrClient:
    assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
    return IbkrClient(
        mock.ibkr_rest_url,
        mock.ibkr_ws_url,
        clock=clock,
        budget=FastBudget(penalty_s=5.0),
        allow_questions=("o10151",),
    )


def broker_order(mock: MockExchange, client_order_id: str) -> Any:
    """The mock's own order of ``client_order_id`` (the ground truth)."""
    assert mock.ibkr is not None
    [order] = [o for o in mock.ibkr.broker.engine.orders if o.client_order_id == client_order_id]
    return order


def test_client_trades_looks_up_and_cancels_against_the_gateway(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def main() -> None:
        clock = FastClock()
        mock = await start_mock(
            ibkr_port=0, trades_per_s=40.0, clock=clock, ground_truth_path=str(truth)
        )
        assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
        async with mock, fast_client(mock, clock) as client:
            await client.subscribe_to_ticker("AAPL")
            await client.subscribe_to_order_updates()
            await client.authenticate_websocket()
            seen = await events_until(client, lambda s: any(isinstance(e, Trade) for e in s))
            [trade] = [e for e in seen if isinstance(e, Trade)]
            # a market order: the gateway asks o10151, which the allow-list confirms
            placed = await client.place_order("AAPL", "BUY", "3", client_order_id="mkt-1")
            assert (placed.client_order_id, placed.side, placed.order_type) == (
                "mkt-1",
                "BUY",
                "MARKET",
            )
            filled = await events_until(
                client,
                lambda s: any(isinstance(e, OrderUpdate) and e.status == "FILLED" for e in s),
            )
            assert [e.client_order_id for e in filled if isinstance(e, OrderUpdate)][-1] == "mkt-1"
            assert broker_order(mock, "mkt-1").executed_qty == Decimal(3)
            assert mock.ibkr is not None and mock.ibkr.broker.positions["AAPL"] == Decimal(3)
            status = await client.order_status("AAPL", "mkt-1")
            assert (status.status, Decimal(status.filled_qty)) == ("FILLED", Decimal(3))
            # limit orders within 3% of the last price (further asks o163, not allowed here)
            low = (Decimal(trade.price) * Decimal("0.98")).quantize(Decimal("0.01"))
            for n in range(3):
                order = await client.place_order(
                    "AAPL", "BUY", "1", order_type="LIMIT", price=str(low), client_order_id=f"l-{n}"
                )
                assert order.status == "NEW" and order.price == str(low)
            again = await client.place_order(
                "AAPL", "BUY", "1", order_type="LIMIT", price=str(low), client_order_id="l-0"
            )
            assert again.order_id == str(broker_order(mock, "l-0").order_id), "one order per id"
            working = await client.open_orders("AAPL")
            assert sorted(o.client_order_id for o in working) == ["l-0", "l-1", "l-2"]
            cancelled = await client.cancel_order("AAPL", "l-0")
            assert cancelled.status == "CANCELED" and broker_order(mock, "l-0").status == "CANCELED"
            rest = await client.cancel_all("AAPL")
            assert sorted(o.client_order_id for o in rest) == ["l-1", "l-2"]
            assert all(broker_order(mock, f"l-{n}").status == "CANCELED" for n in range(3))
            assert await client.open_orders() == []
            with pytest.raises(OrderNotFound):
                await client.order_status("AAPL", "never-placed")
            far = (Decimal(trade.price) * Decimal("0.5")).quantize(Decimal("0.01"))
            with pytest.raises(QuestionDeclined):  # o163 is not in the allow-list
                await client.place_order("AAPL", "BUY", "1", order_type="LIMIT", price=str(far))
            with pytest.raises(ConfigError):
                await client.place_order("AAPL", "BUY", "1", time_in_force="GTC")

    asyncio.run(main())
    placed = [o["cOID"] for o in read_ground_truth(truth).events("ibkr_order")]
    assert sorted(placed) == ["l-0", "l-1", "l-2", "mkt-1"], placed


def test_client_iterates_and_runs_a_callback_that_can_stop_it() -> None:
    class Enough(Exception):
        pass

    async def main() -> None:
        mock = await start_mock(ibkr_port=0, ibkr_options={"md_interval_s": 0.05})
        assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
        async with mock, IbkrClient(mock.ibkr_rest_url, mock.ibkr_ws_url) as client:
            await client.subscribe_to_ticker("AAPL")
            seen: list[Event] = []
            async for event in client:
                seen.append(event)
                if isinstance(event, Trade):
                    break

            async def callback(event: Event) -> None:
                seen.append(event)
                if isinstance(event, Trade):
                    raise Enough

            with pytest.raises(Enough):
                await asyncio.wait_for(client.run(callback), 20)
            trades = [e for e in seen if isinstance(e, Trade)]
            assert len(trades) == 2 and all(e.symbol == "AAPL" for e in trades)
            assert int(trades[1].trade_id) > int(trades[0].trade_id), "in order"
        assert client._closed, "async with closed the client"

    asyncio.run(main())


def test_client_reaches_a_tls_gateway_trusting_its_ca_file(tmp_path: Path) -> None:
    files = generate(tmp_path / "tls", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))

    async def main() -> None:
        mock = await start_mock(ibkr_port=0, tls=files, ibkr_options={"md_interval_s": 0.05})
        assert mock.ibkr_rest_url and mock.ibkr_ws_url and mock.ca_file
        assert mock.ibkr_ws_url.startswith("wss://")
        try:
            async with (
                mock,
                IbkrClient(mock.ibkr_rest_url, mock.ibkr_ws_url, ca_file=mock.ca_file) as client,
            ):
                await client.subscribe_to_ticker("AAPL")
                seen = await events_until(client, lambda s: any(isinstance(e, Trade) for e in s))
                assert any(isinstance(e, Trade) and e.symbol == "AAPL" for e in seen)
        finally:
            trust_ca_file(None)  # the process trusts the system store only again

    asyncio.run(main())


def test_a_cancel_whose_lookup_meets_the_rate_limit_is_not_sent_again() -> None:
    """The cancel went through but the lookup that reads its outcome is refused (429): the
    client waits and looks again; it never sends the cancel a second time."""

    async def main() -> None:
        clock = FastClock()
        mock = await start_mock(ibkr_port=0, trades_per_s=40.0, clock=clock)
        assert mock.ibkr is not None and mock.ibkr_rest_url is not None
        requests = mock.ibkr.requests

        def deletes() -> int:
            return sum(r[1] == "DELETE" and r[3] == 200 for r in requests)

        def refused_after_delete() -> bool:
            first = next(n for n, r in enumerate(requests) if r[1] == "DELETE")
            return any(r[1] == "GET" and r[3] == 429 for r in requests[first:])

        async with mock, fast_client(mock, clock) as client:
            await client.subscribe_to_ticker("AAPL")
            await client.authenticate_websocket()
            seen = await events_until(client, lambda s: any(isinstance(e, Trade) for e in s))
            [trade] = [e for e in seen if isinstance(e, Trade)]
            low = (Decimal(trade.price) * Decimal("0.98")).quantize(Decimal("0.01"))
            await client.place_order(
                "AAPL", "BUY", "1", order_type="LIMIT", price=str(low), client_order_id="c-1"
            )
            cancelling = asyncio.ensure_future(client.cancel_order("AAPL", "c-1"))
            await until(lambda: deletes() == 1, what="the cancel sent")
            # the gateway refuses every request until the cancel's lookup has met the refusal
            await mock.inject({"type": "rate_limit", "scope": "rest", "duration": 600})
            await until(lambda: refused_after_delete(), what="the cancel's lookup refused")
            async with aiohttp.ClientSession() as http:
                async with http.delete(f"{mock.rest_url}/_mock/faults") as answer:
                    assert answer.status == 200
            cancelled = await asyncio.wait_for(cancelling, 30)
            assert (cancelled.client_order_id, cancelled.status) == ("c-1", "CANCELED")
            assert broker_order(mock, "c-1").status == "CANCELED"
            assert client.rate_limit_waits >= 1
            assert deletes() == 1, "the cancel was sent once"

    asyncio.run(main())
