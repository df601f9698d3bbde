"""Integration tests: an in-process mock exchange on port 0 and raw WebSocket/HTTP clients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.mock_support import (
    Scenario,
    market_order,
    recv_json,
    recv_until,
    request,
    run_scenario,
    signed,
)
from tickpipe.mock_ws import MockExchange, read_ground_truth
from tickpipe.venues.binance.wire import (
    parse_execution_report,
    parse_trade,
    unwrap,
)


def run(scenario: Scenario, **kwargs: Any) -> None:
    run_scenario(scenario, timeout_s=8, **({"trades_per_s": 50.0} | kwargs))


def test_raw_stream_sends_bare_contiguous_trades() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            trades = [parse_trade(await recv_json(ws), ts_recv=0) for _ in range(10)]
        assert {t.symbol for t in trades} == {"BTCUSDT"}
        ids = [int(t.trade_id) for t in trades]
        assert ids == list(range(ids[0], ids[0] + 10))
        assert all(abs(float(t.price) / 61800 - 1) < 0.01 for t in trades)

    run(scenario)


def test_combined_stream_wraps_frames_and_logs_ground_truth(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        url = f"{mock.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade/btcusdt@depth@100ms"
        got: list[tuple[str, int]] = []
        async with connect(url) as ws:
            while len({s for s, _ in got}) < 2 or len(got) < 10:
                stream, payload = unwrap(await asyncio.wait_for(ws.recv(), 3))
                if stream == "btcusdt@depth@100ms":
                    assert payload["e"] == "depthUpdate"
                    continue
                assert stream == f"{payload['s'].lower()}@trade"
                got.append((payload["s"], payload["t"]))
        sent = {(t["symbol"], t["trade_id"]) for t in read_ground_truth(gt).trades_sent()}
        assert set(got) <= sent
        status = mock.status()
        assert status["trades_generated"]["BTCUSDT"] > 0

    run(scenario, ground_truth_path=str(gt))
    truth = read_ground_truth(gt)
    assert truth.events("connect")[0]["path"].startswith("/stream?streams=")
    assert len(truth.events("disconnect")) == 1


def test_live_subscribe_unsubscribe_and_list() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/0") as ws:  # ccxt's path shape
            sub = {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 1}
            await ws.send(orjson.dumps(sub).decode())
            assert await recv_until(ws, lambda m: "id" in m) == {"result": None, "id": 1}
            listed = await request(ws, "L1", "LIST_SUBSCRIPTIONS")
            assert listed == {"result": ["btcusdt@trade", "ethusdt@trade"], "id": "L1"}
            await recv_until(ws, lambda m: m.get("s") == "BTCUSDT")
            answer = await request(ws, 2, "UNSUBSCRIBE", ["btcusdt@trade"])
            assert answer == {"result": None, "id": 2}
            # Every frame after the answer is for ETHUSDT only.
            after = [await recv_json(ws) for _ in range(15)]
            assert {m["s"] for m in after} == {"ETHUSDT"}
            assert (await request(ws, 3, "GET_PROPERTY", ["combined"]))["result"] is False
            assert await request(ws, 4, "SET_PROPERTY", ["combined", True]) == {
                "result": None,
                "id": 4,
            }
            wrapped = await recv_until(ws, lambda m: "stream" in m)
            assert wrapped["stream"] == "ethusdt@trade" and wrapped["data"]["e"] == "trade"

    run(scenario)


def test_stream_error_forms() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws") as ws:
            await ws.send("{not json")
            assert (await recv_json(ws))["error"]["code"] == 3
            bad = await request(ws, 7, "SUBSCRIBE", ["dogeusdt@trade"])
            assert bad == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}
            assert (await request(ws, 8, "NOPE"))["error"]["code"] == 2
            assert (await request(ws, 9, "SET_PROPERTY", ["combined", 1]))["error"]["code"] == 1
            assert (await request(ws, 10, "LIST_SUBSCRIPTIONS"))["result"] == []
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{mock.ws_url}/ws/dogeusdt@trade"):
                pass
        assert info.value.response.status_code == 400

    run(scenario)


def test_order_place_fills_and_reaches_the_user_data_stream(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with (
            connect(mock.ws_api_url) as api,
            connect(mock.ws_api_url) as uds,
            connect(f"{mock.ws_url}/ws/btcusdt@trade") as trades,
        ):
            sub = await request(uds, "s1", "userDataStream.subscribe.signature", signed({}))
            assert sub["status"] == 200 and sub["result"] == {"subscriptionId": 0}
            placed = await request(api, "o1", "order.place", signed(market_order("tp-abc")))
            assert placed["status"] == 200 and placed["rateLimits"]
            result = placed["result"]
            assert result["status"] == "FILLED" and result["clientOrderId"] == "tp-abc"
            assert result["executedQty"] == "0.00100000"
            (fill,) = result["fills"]
            reports = []
            while len(reports) < 2:
                message = await recv_json(uds)
                assert message["subscriptionId"] == 0
                if message["event"]["e"] == "executionReport":
                    reports.append(parse_execution_report(message["event"], ts_recv=0))
            assert [(r.exec_type, r.status) for r in reports] == [
                ("NEW", "NEW"),
                ("TRADE", "FILLED"),
            ]
            assert reports[1].client_order_id == "tp-abc" and reports[1].last_price == fill["price"]
            assert reports[1].trade_id == str(fill["tradeId"])
            # The fill is also a public trade.
            public = await recv_until(trades, lambda m: m["t"] == fill["tradeId"])
            assert public["p"] == fill["price"] and public["q"] == "0.00100000"
            status = await request(
                api,
                "q1",
                "order.status",
                signed({"symbol": "BTCUSDT", "origClientOrderId": "tp-abc"}),
            )
            assert status["result"]["status"] == "FILLED"
            assert status["result"]["orderId"] == result["orderId"]
            by_id = await request(
                api,
                "q2",
                "order.status",
                signed({"symbol": "BTCUSDT", "orderId": result["orderId"]}),
            )
            assert by_id["result"]["clientOrderId"] == "tp-abc"
            missing = await request(
                api,
                "q3",
                "order.status",
                signed({"symbol": "BTCUSDT", "origClientOrderId": "nope"}),
            )
            assert missing["status"] == 400 and missing["error"]["code"] == -2013

            def logged() -> bool:
                return len(read_ground_truth(gt).events("execution_report")) >= 2

            for _ in range(300):  # the writer logs right after each send: poll, 3 s at most
                if logged():
                    break
                await asyncio.sleep(0.01)
        truth = read_ground_truth(gt)
        (order,) = truth.orders()
        assert order["client_order_id"] == "tp-abc" and order["status"] == "FILLED"
        assert order["order_id"] == result["orderId"] and order["price"] == fill["price"]
        assert order["symbol"] == "BTCUSDT" and order["side"] == "BUY" and order["qty"] == "0.001"
        assert [e["x"] for e in truth.events("execution_report")] == ["NEW", "TRADE"]
        assert ("BTCUSDT", fill["tradeId"]) in {
            (t["symbol"], t["trade_id"]) for t in truth.trades_sent()
        }

    run(scenario, ground_truth_path=str(gt))


def test_order_place_authentication_errors(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as api:
            bad_sig = await request(api, 1, "order.place", signed(market_order("a"), secret="x"))
            assert bad_sig["status"] == 400
            assert bad_sig["error"] == {
                "code": -1022,
                "msg": "Signature for this request is not valid.",
            }
            wrong_key = await request(api, 2, "order.place", signed(market_order("b"), key="other"))
            assert wrong_key["status"] == 401 and wrong_key["error"]["code"] == -2015
            stale = await request(api, 3, "order.place", signed(market_order("c"), age_ms=6000))
            assert stale["status"] == 400 and stale["error"]["code"] == -1021
            window = await request(
                api, 4, "order.place", signed(market_order("d", recvWindow=10000), age_ms=6000)
            )
            assert window["status"] == 200
            unknown = await request(api, 5, "order.fly", {})
            assert unknown["status"] == 400 and unknown["error"]["code"] == -1100
            pong = await request(api, 6, "ping")
            assert pong["status"] == 200 and pong["result"] == {}
            server_time = (await request(api, 7, "time"))["result"]["serverTime"]
            assert abs(server_time - time.time() * 1000) < 5000
        assert len(mock.engine.orders) == 1

    run(scenario, ground_truth_path=str(gt))
    statuses = [o["status"] for o in read_ground_truth(gt).orders()]
    assert statuses == ["REJECTED", "REJECTED", "REJECTED", "FILLED"]


def test_rest_endpoints() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{mock.rest_url}/api/v3/ping") as r:
                assert r.status == 200 and await r.json() == {}
            async with http.get(f"{mock.rest_url}/api/v3/time") as r:
                assert abs((await r.json())["serverTime"] - time.time() * 1000) < 5000
            async with http.get(f"{mock.rest_url}/api/v3/exchangeInfo") as r:
                info = await r.json()
            assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
            assert info["symbols"][0]["baseAsset"] == "BTC"
            async with http.get(f"{mock.rest_url}/api/v3/exchangeInfo?symbol=DOGEUSDT") as r:
                assert r.status == 400 and (await r.json())["code"] == -1121
            async with connect(f"{mock.ws_url}/ws/ethusdt@trade"):
                async with http.get(f"{mock.rest_url}/_mock/status") as r:
                    status = await r.json()
            assert status["connections"]["stream"] == 1
            assert status["subscriptions"] == {"ethusdt@trade": 1}
            assert set(status["trades_generated"]) == {"BTCUSDT", "ETHUSDT"}

    run(scenario)


def test_server_pings_and_drops_a_client_that_never_pongs() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{mock.ws_url}/ws", autoping=False) as ws:
                kinds = []
                while True:
                    msg = await ws.receive(timeout=3)
                    kinds.append(msg.type)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert aiohttp.WSMsgType.PING in kinds
                assert ws.close_code == 1008 or msg.data == 1008

    run(scenario, ping_interval_s=0.2)


def test_clients_that_answer_pings_stay_connected() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            deadline = time.monotonic() + 1.0  # five ping intervals
            while time.monotonic() < deadline:
                await recv_json(ws)
            assert mock.status()["connections"]["total"] == 1

    run(scenario, ping_interval_s=0.2)
