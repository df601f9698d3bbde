"""A third-party Client Portal client, unchanged, against the gateway mock: ``ibind``'s REST client.

``ibind`` (PyPI) is written from IBKR's Client Portal Web API documentation. Its ``IbkrClient``
is used as its users use it (``url=`` the gateway's ``/v1/api/``, its own ``cacert`` switch: the
mock serves plain HTTP here), one flow per test, its answers compared with the mock's state: the
session (``tickle``, auth status), the accounts, the contract search, an order with its
confirmation question answered through ibind's own question handling, the live orders, a cancel.
The client is synchronous; it runs in a thread while the mock serves on the event loop.

The market-data snapshot (``live_marketdata_snapshot``) is checked here too: the first request
for a conid is the documented pre-flight (ids only), the next one has the fields. ibind's
WebSocket client has its own tests in ``test_ibkr_ibind_ws.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ibind

from tickpipe.mock_ws import MockExchange, start_mock

ACCOUNT = "DU1234567"


def run(flow: Callable[[Any, MockExchange], None]) -> None:
    """Start the mock, hand ``flow`` an ibind client pointed at it, run it in a thread."""

    async def main() -> None:
        mock = await start_mock(ibkr_port=0, trades_per_s=40.0)
        try:
            assert mock.ibkr_rest_url is not None
            client = ibind.IbkrClient(
                url=mock.ibkr_rest_url + "/", account_id=ACCOUNT, cacert=False,
                auto_register_shutdown=False, use_session=True,
            )  # fmt: skip
            await asyncio.wait_for(asyncio.to_thread(flow, client, mock), 40)
        finally:
            await mock.close()

    asyncio.run(main())


def test_tickle_and_auth_status_show_the_mocks_session() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        tickle = client.tickle().data
        assert tickle["session"] == mock.ibkr.gateway.session
        assert tickle["iserver"]["authStatus"]["authenticated"] is True
        assert client.check_auth_status() is True
        status = client.authentication_status().data
        assert status["authenticated"] is True and status["connected"] is True

    run(flow)


def test_accounts_are_the_mocks_account() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        accounts = client.receive_brokerage_accounts().data
        assert accounts["accounts"] == [mock.ibkr.gateway.account_id] == [ACCOUNT]
        portfolio = client.portfolio_accounts().data
        assert [a["accountId"] for a in portfolio] == [ACCOUNT]

    run(flow)


def test_contract_search_finds_the_mocks_conids() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        found = client.search_contract_by_symbol("AAPL").data
        assert int(found[0]["conid"]) == mock.ibkr.contracts.by_symbol["AAPL"]
        conids = client.stock_conid_by_symbol("MSFT").data
        assert conids == {"MSFT": mock.ibkr.contracts.by_symbol["MSFT"]}

    run(flow)


def _order(client: Any, mock: MockExchange, coid: str, **fields: Any) -> Any:
    assert mock.ibkr is not None
    request = ibind.OrderRequest(
        conid=mock.ibkr.contracts.by_symbol["AAPL"], side="BUY", quantity=1, acct_id=ACCOUNT,
        coid=coid, **{"order_type": "MKT", **fields},
    )  # fmt: skip
    client.receive_brokerage_accounts()  # the gateway wants it before orders
    answers = {"You are about to submit a market order": True}
    return client.place_order(request, answers).data


def test_a_market_order_with_its_question_is_placed_once_and_listed_live() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        placed = _order(client, mock, "ibind-mkt")
        assert placed["order_status"] in ("PreSubmitted", "Submitted", "Filled")
        assert mock.ibkr.broker.questions_asked == 1
        [order] = [o for o in mock.ibkr.broker.engine.orders if o.client_order_id == "ibind-mkt"]
        assert str(order.order_id) == placed["order_id"]
        live = client.live_orders().data["orders"]
        [listed] = [o for o in live if o["order_ref"] == "ibind-mkt"]
        assert listed["orderId"] == order.order_id and listed["status"] == "Filled"
        assert Decimal(str(listed["filledQuantity"])) == order.executed_qty == 1
        assert mock.ibkr.status()["positions"] == {"AAPL": "1"}

    run(flow)


def test_a_resting_limit_order_is_cancelled() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        last = Decimal(mock.ibkr.sim.last_price("AAPL"))
        price = float((last * Decimal("0.98")).quantize(Decimal("0.01")))  # rests, no question
        placed = _order(client, mock, "ibind-lmt", order_type="LMT", price=price)
        answer = client.cancel_order(placed["order_id"]).data
        assert answer["msg"] == "Request was submitted"
        assert str(answer["order_id"]) == placed["order_id"]
        [order] = [o for o in mock.ibkr.broker.engine.orders if o.client_order_id == "ibind-lmt"]
        assert not order.is_open and order.executed_qty == 0
        [listed] = [o for o in client.live_orders().data["orders"] if o["order_ref"] == "ibind-lmt"]
        assert listed["status"] == "Cancelled"

    run(flow)


def test_live_marketdata_snapshot_answers_the_pre_flight_then_the_fields() -> None:
    def flow(client: Any, mock: MockExchange) -> None:
        assert mock.ibkr is not None
        conid = mock.ibkr.contracts.by_symbol["AAPL"]
        client.receive_brokerage_accounts()  # the gateway wants it before market data
        fields = ["55", "31", "84", "86"]
        first = client.live_marketdata_snapshot(str(conid), fields).data
        assert first == [{"conid": conid, "conidEx": str(conid)}]
        assert list(mock.ibkr.snapshot_streams) == [conid]  # the stream is open now
        [entry] = client.live_marketdata_snapshot(str(conid), fields).data
        stream = mock.ibkr.snapshot_streams[conid]
        assert entry["conid"] == conid and entry["server_id"] == entry["6119"] == stream.server_id
        assert entry["55"] == "AAPL" and entry["6509"] == "RpB"
        bid, ask = Decimal(entry["84"]), Decimal(entry["86"])
        assert Decimal(entry["31"].lstrip("C")) > 0 and 0 < bid < ask

    run(flow)
