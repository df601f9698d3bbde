"""Integration tests: a recorded session served as the live venue."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import connect

from tests.realdata import REALDATA
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock


async def get(mock: MockExchange, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(f"{mock.rest_url}{path}") as resp:
        assert resp.status == 200
        return await resp.json()


async def wait_done(mock: MockExchange) -> None:
    """Poll ``/_mock/status`` until the replay has sent every frame."""
    for _ in range(200):
        if (await get(mock, "/_mock/status"))["replay"]["done"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the replay did not finish")


def test_cryptofeed_replay_streams_and_consistent_depth(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def main() -> None:
        mock = await start_mock(
            replay=str(REALDATA / "cryptofeed" / "20210814_4fe0297"),
            replay_speed=15.0,
            ground_truth_path=str(gt),
        )
        try:
            info = await get(mock, "/api/v3/exchangeInfo")
            assert {s["symbol"] for s in info["symbols"]} == {
                "XMRBTC",
                "FTMUSDT",
                "SXPBTC",
                "BADGERBTC",
            }
            url = f"{mock.ws_url}/stream?streams=ftmusdt@depth@100ms/ftmusdt@aggTrade"
            diffs: list[dict[str, Any]] = []
            async with connect(url) as ws:
                while len(diffs) < 40:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
                    if message["stream"] == "ftmusdt@depth@100ms":
                        diffs.append(message["data"])
                snap = await get(mock, "/api/v3/depth?symbol=FTMUSDT&limit=5")
            assert diffs[0]["E"] > 1628952390000  # recorded payloads, recorded times
            after_snapshot = [d for d in diffs if d["u"] > 800360994]
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(after_snapshot))
            assert snap["lastUpdateId"] >= diffs[-1]["u"] and len(snap["bids"]) == 5
            await wait_done(mock)
        finally:
            await mock.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    states = [e["state"] for e in read_ground_truth(gt).events("replay")]
    assert states == ["start", "done"]


def test_hftbacktest_replay_trades_reach_rest_history() -> None:
    async def main() -> None:
        mock = await start_mock(
            replay=str(REALDATA / "hftbacktest" / "spot" / "ethusdt_20240808.gz"),
            replay_speed=20.0,
        )
        try:
            async with connect(f"{mock.ws_url}/ws/ethusdt@trade") as ws:
                trades = [orjson.loads(await asyncio.wait_for(ws.recv(), 15)) for _ in range(5)]
            ids = [t["t"] for t in trades]
            assert ids == list(range(ids[0], ids[0] + 5)) and ids[0] >= 1520538925
            history = await get(
                mock, f"/api/v3/historicalTrades?symbol=ETHUSDT&fromId={ids[0]}&limit=5"
            )
            assert [t["id"] for t in history] == ids
            assert history[0]["price"] == trades[0]["p"]
        finally:
            await mock.close()

    asyncio.run(asyncio.wait_for(main(), 30))
