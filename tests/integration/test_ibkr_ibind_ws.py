"""A third-party Client Portal client, unchanged, against the gateway mock: ibind's WS client.

``ibind.IbkrWsClient`` is used as its users use it: pointed at the gateway's ``/v1/api/ws``
(``url=``), given the ``IbkrClient`` it takes its session from, ``cacert=False`` (the mock
serves plain HTTP here), a ``QueueSink`` for its events. It authenticates the way it does against
a real gateway: ``POST /tickle`` for the session, sent as the cookie ``api={"session": ...}``,
and a second ``POST /tickle`` when the socket opens to check that the session did not change.
Each flow compares what ibind received with the mock's own state or ground truth: the connection
the mock authenticated, the ``smd`` field updates it sent for a conid, the ``sor`` order it
pushed after an order placed through ibind's REST client, and a clean shutdown (the mock sees
the socket close and ibind's threads stop). The clients are synchronous; they run in a thread
while the mock serves on the event loop; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibind
import pytest
from ibind import events, subscriptions

from tests.waits import wait_for
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.mock_ws.ibkr.server import IbkrMock

ACCOUNT = "DU1234567"
WAIT_S = 20.0


def _subscribe(ws: Any, subscription: Any) -> None:
    handle = ws.subscribe(subscription)
    assert ws.wait_all([handle], timeout_each=WAIT_S) == []


def _gather(sink: ibind.QueueSink, kind: type, enough: Callable[[list[Any]], bool]) -> list[Any]:
    """Take ``kind`` events off ``sink`` until ``enough`` says so of all taken (or fail)."""
    taken: list[Any] = []

    def done() -> bool:
        while (event := sink.get(kind)) is not None:
            taken.append(event)
        return enough(taken)

    wait_for(done, timeout_s=WAIT_S, what=f"{kind.__name__} events")
    return taken


def run(
    flow: Callable[[Any, Any, ibind.QueueSink, IbkrMock], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Start the mock, hand ``flow`` ibind's REST and started WebSocket clients, the sink of
    its events and the gateway mock; shut down."""
    monkeypatch.setattr(ibind.var, "IBIND_WS_TIMEOUT", WAIT_S)  # a loaded machine is slow

    def in_thread(mock: MockExchange) -> None:
        assert mock.ibkr is not None
        assert mock.ibkr_rest_url is not None and mock.ibkr_ws_url is not None
        client = ibind.IbkrClient(
            url=mock.ibkr_rest_url + "/", account_id=ACCOUNT, cacert=False,
            auto_register_shutdown=False, use_session=True,
        )  # fmt: skip
        sink = ibind.QueueSink()
        ws = ibind.IbkrWsClient(
            url=mock.ibkr_ws_url, account_id=ACCOUNT, ibkr_client=client, cacert=False,
            sink=sink, synchronous_output_events=True,
        )  # fmt: skip
        try:
            assert ws.start() is True, "ibind did not authenticate its socket"
            flow(client, ws, sink, mock.ibkr)
        finally:
            ws.shutdown()

    async def main() -> None:
        mock = await start_mock(
            ibkr_port=0, trades_per_s=40.0, ground_truth_path=str(tmp_path / "truth.jsonl")
        )
        try:
            await asyncio.wait_for(asyncio.to_thread(in_thread, mock), 60)
        finally:
            await mock.close()

    asyncio.run(main())


def test_ibind_authenticates_its_socket_with_the_tickle_session_cookie(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flow(client: Any, ws: Any, sink: ibind.QueueSink, gateway: IbkrMock) -> None:
        assert ws.is_authenticated()
        [conn] = gateway.connections.values()
        assert conn.authenticated
        tickles = [r for r in gateway.requests if r[2] == "/v1/api/tickle"]
        assert len(tickles) >= 2 and {r[3] for r in tickles} == {200}  # cookie, then its check
        assert gateway.pacer.refused == 0

    run(flow, tmp_path, monkeypatch)


def test_ibind_receives_smd_field_updates_the_mock_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flow(client: Any, ws: Any, sink: ibind.QueueSink, gateway: IbkrMock) -> None:
        client.receive_brokerage_accounts()  # the gateway wants it before market data
        conid = gateway.contracts.by_symbol["AAPL"]
        wanted = ["31", "84", "86", "7059"]
        _subscribe(ws, subscriptions.MarketDataSubscription(conid=str(conid), fields=wanted))
        received = _gather(
            sink, events.MarketData, lambda got: any("last_price" in e.data for e in got)
        )
        assert {e.conid for e in received} == {str(conid)}
        names = {"last_price", "bid_price", "ask_price", "last_size", "market_data_marker"}
        assert set().union(*(e.data for e in received)) <= names
        truth = read_ground_truth(tmp_path / "truth.jsonl")
        sent = {e["price"] for e in truth.events("ibkr_last_sent") if e["conid"] == conid}
        got = {e.data["last_price"] for e in received if "last_price" in e.data}
        assert got and got <= sent, (got, sent)
        [conn] = gateway.connections.values()
        assert sorted(conn.subs) == [conid]

    run(flow, tmp_path, monkeypatch)


def test_ibind_receives_the_sor_update_of_an_order_placed_through_its_rest_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flow(client: Any, ws: Any, sink: ibind.QueueSink, gateway: IbkrMock) -> None:
        _subscribe(ws, subscriptions.OrdersSubscription())
        wait_for(
            lambda: "sor" in next(iter(gateway.connections.values())).topics,
            timeout_s=WAIT_S,
            what="sor",
        )
        client.receive_brokerage_accounts()
        request = ibind.OrderRequest(
            conid=gateway.contracts.by_symbol["AAPL"], side="BUY", quantity=1,
            acct_id=ACCOUNT, coid="ibind-ws-sor", order_type="MKT",
        )  # fmt: skip
        answers = {"You are about to submit a market order": True}
        placed = client.place_order(request, answers).data

        def _orders(got: list[Any]) -> list[dict[str, Any]]:
            return [o for e in got for o in e.data.get("args", []) if isinstance(o, dict)]

        updates = _gather(
            sink, events.Orders, lambda got: any(o.get("status") == "Filled" for o in _orders(got))
        )
        orders = _orders(updates)
        [order] = [o for o in gateway.broker.engine.orders if o.client_order_id == "ibind-ws-sor"]
        mine = [o for o in orders if str(o.get("orderId")) == str(placed["order_id"])]
        assert mine and all(o["orderId"] == order.order_id for o in mine)
        last = mine[-1]
        assert last["status"] == "Filled" and float(last["filledQuantity"]) == order.executed_qty

    run(flow, tmp_path, monkeypatch)


def test_ibind_shuts_down_cleanly_and_the_mock_sees_the_socket_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def flow(client: Any, ws: Any, sink: ibind.QueueSink, gateway: IbkrMock) -> None:
        assert len(gateway.connections) == 1
        assert ws.shutdown() is True
        assert not ws.is_running()
        wait_for(
            lambda: not gateway.connections,
            timeout_s=WAIT_S,
            what="the mock to see the socket close",
        )
        truth = read_ground_truth(tmp_path / "truth.jsonl")
        assert len(truth.events("ibkr_connect")) == len(truth.events("ibkr_disconnect")) == 1

    run(flow, tmp_path, monkeypatch)
