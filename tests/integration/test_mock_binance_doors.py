"""Integration tests: the mock's REST and WebSocket API doors answer and record an order alike."""

from __future__ import annotations

from pathlib import Path

from websockets.asyncio.client import connect

from tests.integration.test_mock_trading import rest, run
from tests.mock_support import request, signed
from tickpipe.mock_ws import MockExchange, read_ground_truth

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}


def test_an_order_placed_over_rest_is_recorded_as_over_the_ws_api(tmp_path: Path) -> None:
    """Ground truth holds the same fields, the fill price among them, whichever door was used."""
    truth = tmp_path / "truth.jsonl"
    placed: dict[str, dict[str, object]] = {}

    async def scenario(mock: MockExchange) -> None:
        status, answer = await rest(
            mock, "POST", "/api/v3/order", {**ORDER, "newClientOrderId": "r"}
        )
        assert status == 200, answer
        placed["r"] = answer
        async with connect(mock.ws_api_url) as ws:
            reply = await request(
                ws, "1", "order.place", signed({**ORDER, "newClientOrderId": "w"})
            )
        assert reply["status"] == 200, reply
        placed["w"] = reply["result"]

    run(scenario, ground_truth_path=str(truth))
    records = {o["client_order_id"]: o for o in read_ground_truth(truth).orders()}
    assert set(records) == {"r", "w"}
    for cid, record in records.items():
        fill = placed[cid]["fills"][0]  # type: ignore[index]
        assert record["price"] == fill["price"], (cid, record)
        assert record["status"] == "FILLED" and record["symbol"] == "BTCUSDT", (cid, record)
    assert {k for k in records["r"] if k not in ("conn", "ts")} == {
        k for k in records["w"] if k not in ("conn", "ts")
    }
    assert records["r"]["qty"] == records["w"]["qty"]


def test_an_order_query_without_a_symbol_is_refused_alike() -> None:
    """``symbol`` is mandatory on ``GET /api/v3/order`` as on ``order.status`` (-1102)."""

    async def scenario(mock: MockExchange) -> None:
        status, answer = await rest(mock, "GET", "/api/v3/order", {"origClientOrderId": "x"})
        async with connect(mock.ws_api_url) as ws:
            reply = await request(ws, "1", "order.status", signed({"origClientOrderId": "x"}))
        assert reply["error"]["code"] == -1102, reply
        assert (status, answer["code"]) == (400, -1102), answer

    run(scenario)


def test_an_order_error_fault_answers_its_message_through_either_door() -> None:
    """An ``order_error`` fault's ``msg`` and ``code`` reach the client over REST as over WS."""
    fault = {"type": "order_error", "mode": "error", "code": -1006, "msg": "backend says no"}

    async def scenario(mock: MockExchange) -> None:
        await mock.inject({**fault, "kind": "rest"})
        status, answer = await rest(mock, "POST", "/api/v3/order", {**ORDER})
        await mock.inject({**fault, "kind": "api"})
        async with connect(mock.ws_api_url) as ws:
            reply = await request(ws, "1", "order.place", signed({**ORDER}))
        assert reply["error"] == {"code": -1006, "msg": "backend says no"}, reply
        assert (status, answer) == (503, {"code": -1006, "msg": "backend says no"}), answer

    run(scenario)
