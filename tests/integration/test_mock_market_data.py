"""Integration tests: market streams and REST market data of the mock, read by raw clients."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import connect

from tests.mock_support import Scenario, apply_levels, run_scenario
from tickpipe.mock_ws import MockExchange
from tickpipe.mock_ws.binance.candles import INTERVALS


def run(scenario: Scenario, **kwargs: Any) -> None:
    run_scenario(scenario, timeout_s=9, **({"trades_per_s": 60.0} | kwargs))


async def get(mock: MockExchange, path: str) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{mock.rest_url}{path}") as resp:
        return resp.status, await resp.json(), dict(resp.headers)


def test_depth_snapshot_syncs_with_diff_stream_and_partials_agree() -> None:
    async def scenario(mock: MockExchange) -> None:
        streams = "btcusdt@depth@100ms/btcusdt@depth5@100ms/btcusdt@bookTicker/btcusdt@aggTrade"
        async with connect(f"{mock.ws_url}/stream?streams={streams}") as ws:
            buffered: list[dict[str, Any]] = []
            while len(buffered) < 2:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
                if message["stream"] == "btcusdt@depth@100ms":
                    buffered.append(message["data"])
            status, snap, headers = await get(mock, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
            assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "50"
            bids, asks = {}, {}
            apply_levels(bids, snap["bids"])
            apply_levels(asks, snap["asks"])
            last = snap["lastUpdateId"]
            synced = compared = 0
            kinds: set[str] = set()
            while compared < 2:
                if buffered:
                    stream, data = "btcusdt@depth@100ms", buffered.pop(0)
                else:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
                    stream, data = message["stream"], message["data"]
                kinds.add(stream)
                if stream == "btcusdt@depth@100ms":
                    if data["u"] <= last:
                        continue
                    assert data["U"] <= last + 1 <= data["u"]
                    if synced:
                        assert data["U"] == last + 1
                    apply_levels(bids, data["b"])
                    apply_levels(asks, data["a"])
                    last = data["u"]
                    synced += 1
                    assert max(bids) < min(asks)
                elif stream == "btcusdt@depth5@100ms" and synced and data["lastUpdateId"] == last:
                    top_bids = sorted(bids.items(), reverse=True)[:5]
                    top_asks = sorted(asks.items())[:5]
                    assert [(Decimal(p), Decimal(q)) for p, q in data["bids"]] == top_bids
                    assert [(Decimal(p), Decimal(q)) for p, q in data["asks"]] == top_asks
                    compared += 1
                elif stream == "btcusdt@bookTicker":
                    assert set(data) == {"u", "s", "b", "B", "a", "A"}
                    assert Decimal(data["b"]) < Decimal(data["a"])
                elif stream == "btcusdt@aggTrade":
                    assert data["e"] == "aggTrade" and data["f"] <= data["l"]
            assert {"btcusdt@bookTicker", "btcusdt@aggTrade"} <= kinds

    run(scenario)


def test_rest_trades_backfill_a_trade_id_gap() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws/btcusdt@trade") as ws:
            ids = [orjson.loads(await ws.recv())["t"]]
            await mock.inject({"type": "trade_gap", "symbol": "BTCUSDT", "count": 2})
            while len(ids) < 2 or ids[-1] - ids[-2] == 1:
                ids.append(orjson.loads(await asyncio.wait_for(ws.recv(), 3))["t"])
        missing = ids[-2] + 1
        status, trades, headers = await get(
            mock, f"/api/v3/historicalTrades?symbol=BTCUSDT&fromId={missing}&limit=2"
        )
        assert status == 200 and [t["id"] for t in trades] == [missing, missing + 1]
        assert headers["X-MBX-USED-WEIGHT-1M"] == "25"
        assert set(trades[0]) == {
            "id",
            "price",
            "qty",
            "quoteQty",
            "time",
            "isBuyerMaker",
            "isBestMatch",
        }
        status, recent, _ = await get(mock, "/api/v3/trades?symbol=BTCUSDT&limit=3")
        assert status == 200 and len(recent) == 3 and recent[-1]["id"] >= ids[-1]
        status, aggs, _ = await get(mock, "/api/v3/aggTrades?symbol=BTCUSDT&fromId=1&limit=4")
        assert status == 200 and [a["a"] for a in aggs] == [1, 2, 3, 4]
        assert set(aggs[0]) == {"a", "p", "q", "f", "l", "T", "m", "M"}

    run(scenario)


def test_rest_errors_and_weight_limit() -> None:
    async def scenario(mock: MockExchange) -> None:
        status, body, _ = await get(mock, "/api/v3/depth")
        assert status == 400 and body["code"] == -1102
        status, body, _ = await get(mock, "/api/v3/trades?symbol=NOPE")
        assert status == 400 and body == {"code": -1121, "msg": "Invalid symbol."}
        status, body, _ = await get(mock, "/api/v3/depth?symbol=BTCUSDT&limit=0")
        assert status == 400 and body["code"] == -1100
        status, _, headers = await get(mock, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == str(5 + 25 + 5 + 250)
        status, body, headers = await get(mock, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
        assert status == 429 and body["code"] == -1003
        assert 1 <= int(headers["Retry-After"]) <= 60

    run(scenario, rest_weight_limit=300)


def test_kline_and_ticker_streams_and_rest_klines() -> None:
    async def scenario(mock: MockExchange) -> None:
        streams = "btcusdt@kline_1s/btcusdt@miniTicker/!miniTicker@arr/ethusdt@ticker"
        seen: dict[str, Any] = {}
        async with connect(f"{mock.ws_url}/stream?streams={streams}") as ws:
            while len(seen) < 4:
                message = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
                seen.setdefault(message["stream"], message["data"])
        kline = seen["btcusdt@kline_1s"]
        assert kline["e"] == "kline" and kline["k"]["i"] == "1s"
        assert kline["k"]["T"] - kline["k"]["t"] == 999
        assert seen["btcusdt@miniTicker"]["e"] == "24hrMiniTicker"
        assert {m["s"] for m in seen["!miniTicker@arr"]} <= {"BTCUSDT", "ETHUSDT"}
        assert seen["ethusdt@ticker"]["e"] == "24hrTicker"
        status, rows, headers = await get(mock, "/api/v3/klines?symbol=BTCUSDT&interval=1s")
        assert status == 200 and rows and len(rows[0]) == 12
        assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
        status, body, _ = await get(mock, "/api/v3/klines?symbol=BTCUSDT&interval=7m")
        assert (status, body["code"]) == (400, -1120)

    run(scenario)


def test_more_than_1024_streams_per_connection_are_refused() -> None:
    symbols = [f"C{i:02d}USDT" for i in range(30)]
    channels = ["trade", "aggTrade", "bookTicker", "depth", "depth@100ms", "miniTicker"]
    channels += [f"kline_{i}{tz}" for i in INTERVALS for tz in ("", "@+08:00")]
    names = [f"{s.lower()}@{c}" for s in symbols for c in channels]
    assert len(names) > 1024

    async def scenario(mock: MockExchange) -> None:
        async with connect(f"{mock.ws_url}/ws") as ws:
            first = {"method": "SUBSCRIBE", "params": names[:1024], "id": 1}
            await ws.send(orjson.dumps(first).decode())
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
            while "id" not in answer:
                answer = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
            assert answer == {"result": None, "id": 1}
            more = {"method": "SUBSCRIBE", "params": names[1024:], "id": 2}
            await ws.send(orjson.dumps(more).decode())
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
            while answer.get("id") != 2:
                answer = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
            assert answer["error"]["code"] == 2

    run(scenario, symbols=symbols, trades_per_s=1.0)
