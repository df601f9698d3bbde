"""Integration tests: the mock's fault plan fired mid-run against raw WebSocket/HTTP clients."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.mock_support import Scenario, market_order, recv_json, request, run_scenario, signed
from tickpipe.mock_ws import FaultError, MockExchange, read_ground_truth


def run(scenario: Scenario, **kwargs: Any) -> None:
    run_scenario(scenario, timeout_s=9, **({"trades_per_s": 80.0} | kwargs))


def order(cid: str) -> dict[str, Any]:
    return signed(market_order(cid))


async def wait_closed(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 3)
    return ws.close_code


async def post_fault(mock: MockExchange, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{mock.rest_url}/_mock/faults", json=body) as resp,
    ):
        return resp.status, await resp.json()


def test_control_endpoint_drops_matching_connections_and_logs(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with (
            connect(f"{mock.ws_url}/ws/btcusdt@trade") as btc,
            connect(f"{mock.ws_url}/ws/ethusdt@trade") as eth,
        ):
            await recv_json(btc)
            status, body = await post_fault(mock, {"type": "drop", "stream": "btcusdt@trade"})
            assert status == 200 and body["added"][0]["type"] == "drop"
            await wait_closed(btc)
            assert (await recv_json(eth))["s"] == "ETHUSDT"
            status, body = await post_fault(mock, [{"type": "stall", "at": 30}])
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{mock.rest_url}/_mock/faults") as resp:
                    listed = (await resp.json())["faults"]
                assert [f["type"] for f in listed] == ["stall"] and not listed[0]["fired"]
                async with http.delete(f"{mock.rest_url}/_mock/faults") as resp:
                    assert (await resp.json()) == {"cleared": 1}
            assert mock.faults() == []
            status, body = await post_fault(mock, {"type": "explode"})
            assert status == 400 and "type" in body["error"]
            with pytest.raises(FaultError):
                await mock.inject({"type": "stall", "duration": -1})

    run(scenario, ground_truth_path=str(gt))
    truth = read_ground_truth(gt)
    fired = truth.events("fault")
    assert [f["type"] for f in fired] == ["drop"] and fired[0]["stream"] == "btcusdt@trade"
    assert len(truth.events("fault_hit")) == 1


def test_stall_stops_data_but_pings_are_answered(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            first = await recv_json(ws)
            await mock.inject({"type": "stall", "duration": 1.0, "path": "btcusdt"})
            # Drain what was queued before the stall, then expect silence.
            drained = first
            with pytest.raises(TimeoutError):
                while True:
                    drained = await recv_json(ws, wait_s=0.5)
            pong = await ws.ping()
            await asyncio.wait_for(pong, 1)
            after = await recv_json(ws, wait_s=3)
            assert after["t"] > drained["t"] + 1  # trades generated during the stall are lost

    run(scenario, ground_truth_path=str(gt))
    assert read_ground_truth(gt).events("fault")[0]["duration"] == 1.0


def test_duplicate_reorder_and_malformed_frames() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            await recv_json(ws)
            await mock.inject(
                [
                    {"type": "duplicate", "count": 1},
                    {"type": "reorder", "count": 1, "at": 0.3},
                    {"type": "malformed", "count": 1, "at": 0.6},
                ]
            )
            ids: list[int] = []
            bad: list[str] = []
            while len(ids) < 60 or not bad:
                text = await asyncio.wait_for(ws.recv(), 3)
                try:
                    ids.append(orjson.loads(text)["t"])
                except orjson.JSONDecodeError:
                    bad.append(str(text))
            assert any(a == b for a, b in itertools.pairwise(ids))
            assert any(b < a for a, b in itertools.pairwise(ids))
            assert len(bad) == 1 and bad[0].startswith('{"e":"trade"')
            assert set(ids) == set(range(min(ids), max(ids) + 1))

    run(scenario)


def test_trade_gap_skips_ids_that_exist_in_ground_truth(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            ids = [(await recv_json(ws))["t"]]
            await mock.inject({"type": "trade_gap", "symbol": "BTCUSDT", "count": 3})
            ids += [(await recv_json(ws))["t"] for _ in range(20)]
        gaps = [b - a for a, b in itertools.pairwise(ids)]
        assert sorted(gaps)[-1] == 4 and sum(gaps) == len(gaps) + 3

    run(scenario, ground_truth_path=str(gt))
    skipped = [e["trade_id"] for e in read_ground_truth(gt).events("trade_skipped")]
    assert len(skipped) == 3 and skipped == list(range(skipped[0], skipped[0] + 3))


def test_slow_reader_is_disconnected() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            await mock.inject(
                [
                    {"type": "delay", "ms": 300, "jitter_ms": 50},
                    {"type": "slow_reader", "max_queue": 3},
                ]
            )
            assert await wait_closed(ws) == 1008

    run(scenario, trades_per_s=200.0)


def test_rate_limit_rest_and_ws_api() -> None:
    async def scenario(mock: MockExchange) -> None:
        await mock.inject({"type": "rate_limit", "status": 429, "retry_after": 2, "scope": "rest"})
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{mock.rest_url}/api/v3/time") as resp:
                assert resp.status == 429 and resp.headers["Retry-After"] == "2"
                assert (await resp.json())["code"] == -1003
            async with http.get(f"{mock.rest_url}/_mock/status") as resp:
                assert resp.status == 200
        async with connect(mock.ws_api_url) as ws:
            assert (await request(ws, 1, "ping"))["status"] == 200
            await mock.inject({"type": "rate_limit", "status": 418, "retry_after": 60})
            answer = await request(ws, 2, "time")
            assert answer["status"] == 418 and answer["error"]["code"] == -1003
            data = answer["error"]["data"]
            assert data["retryAfter"] - data["serverTime"] == 60_000
            assert "banned until" in answer["error"]["msg"]

    run(scenario)


def test_an_api_delay_holds_each_ws_api_answer_in_turn() -> None:
    async def scenario(mock: MockExchange) -> None:
        def hits(kind: str | None) -> int:
            listing = mock.faults()
            return sum(f["hits"] for f in listing if f["type"] == "delay" and f.get("kind") == kind)

        async with connect(mock.ws_api_url) as ws:
            await mock.inject({"type": "delay", "ms": 150})  # data frames only
            assert (await request(ws, 1, "ping"))["status"] == 200
            assert hits(None) == 0
            await mock.inject({"type": "delay", "ms": 150, "kind": "api"})
            began = time.monotonic()
            for rid in (2, 3):
                await ws.send(orjson.dumps({"id": rid, "method": "ping"}).decode())
            answers = [await recv_json(ws) for _ in range(2)]
            assert [a["id"] for a in answers] == [2, 3]
            assert time.monotonic() - began >= 0.3  # 150 ms each, one after the other
            assert hits("api") == 2 and hits(None) == 0

    run(scenario)


def test_lifetime_closes_connections() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            assert await wait_closed(ws) == 1000  # by the lifetime, before wait_closed's deadline

    run(scenario, lifetime_s=0.5)


def test_server_shutdown_event_then_close() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with (
            connect(f"{mock.ws_url}/ws/btcusdt@trade") as raw,
            connect(f"{mock.ws_url}/stream?streams=btcusdt@trade") as combined,
            connect(mock.ws_api_url) as api,
        ):
            await recv_json(raw)
            await mock.inject({"type": "server_shutdown", "grace": 0.3})
            seen: dict[str, Any] = {}
            for name, ws in (("raw", raw), ("combined", combined), ("api", api)):
                while name not in seen:
                    msg = await recv_json(ws)
                    if msg.get("e") == "serverShutdown" or "serverShutdown" in str(msg):
                        seen[name] = msg
                assert await wait_closed(ws) == 1001
            assert seen["raw"]["e"] == "serverShutdown"
            assert seen["combined"]["stream"] == "!serverShutdown"
            assert seen["api"]["event"]["e"] == "serverShutdown"

    run(scenario)


def test_order_entry_faults(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(mock.ws_api_url) as ws:
            sub = await request(ws, "s", "userDataStream.subscribe.signature", signed({}))
            assert sub["status"] == 200
            await mock.inject({"type": "order_error", "mode": "error"})
            answer = await request(ws, "o1", "order.place", order("c1"))
            assert answer["status"] == 503 and answer["error"]["code"] == -1007
            assert len(mock.engine.orders) == 0
            await mock.inject({"type": "order_error", "mode": "timeout"})
            await ws.send(
                orjson.dumps({"id": "o2", "method": "order.place", "params": order("c2")})
            )
            assert (await request(ws, "p", "ping"))["status"] == 200
            assert len(mock.engine.orders) == 0
            await mock.inject({"type": "order_error", "mode": "lost"})
            await ws.send(
                orjson.dumps({"id": "o3", "method": "order.place", "params": order("c3")})
            )
            report = await recv_json(ws)
            while report.get("event", {}).get("e") != "executionReport":
                assert report.get("id") != "o3"
                report = await recv_json(ws)
            assert report["event"]["c"] == "c3"
            assert (await request(ws, "p2", "ping"))["status"] == 200
            assert [o.client_order_id for o in mock.engine.orders] == ["c3"]
            placed = await request(ws, "o4", "order.place", order("c4"))
            assert placed["status"] == 200

    run(scenario, ground_truth_path=str(gt))
    hits = read_ground_truth(gt).events("fault_hit")
    assert [(h["mode"], h["client_order_id"]) for h in hits] == [
        ("error", "c1"),
        ("timeout", "c2"),
        ("lost", "c3"),
    ]


def test_depth_gap_breaks_diff_continuity(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@depth@100ms") as ws:
            events = [await recv_json(ws)]
            await mock.inject({"type": "depth_gap", "symbol": "BTCUSDT", "count": 1})
            while len(events) < 2 or events[-1]["U"] == events[-2]["u"] + 1:
                events.append(await recv_json(ws))
            assert events[-1]["U"] > events[-2]["u"] + 1

    run(scenario, ground_truth_path=str(gt))
    assert len(read_ground_truth(gt).events("depth_skipped")) == 1


def test_more_than_five_incoming_messages_a_second_disconnects() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws") as ws:
            for rid in range(10):
                await ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}).decode())
            answered = []
            with pytest.raises(ConnectionClosed):
                while True:
                    answered.append(await recv_json(ws))
            assert len(answered) <= 5 and ws.close_code == 1008

    run(scenario)


def test_scenario_endpoint_schedules_a_crash(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        body = {"name": "crash", "symbol": "BTCUSDT", "duration": 0.5, "pct": 20}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{mock.rest_url}/_mock/scenario", json=body) as resp:
                assert resp.status == 200 and (await resp.json())["added"][0]["pct"] == 20
            async with http.post(f"{mock.rest_url}/_mock/scenario", json={"name": "x"}) as resp:
                assert resp.status == 400
            async with http.get(f"{mock.rest_url}/_mock/scenario") as resp:
                assert [s["name"] for s in (await resp.json())["scenarios"]] == ["crash"]
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            price = 61800.0
            while price > 61800 * 0.85:
                price = float((await recv_json(ws))["p"])
        mock.schedule({"name": "halt", "symbol": "ETHUSDT", "duration": 1})

    run(scenario, ground_truth_path=str(gt), trades_per_s=100.0)
    assert [e["name"] for e in read_ground_truth(gt).events("scenario")] == ["crash", "halt"]
