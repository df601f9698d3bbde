"""Integration tests of REST snapshots and trade backfills written into raw."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import fakeredis
from aiohttp import web
from websockets.asyncio.server import ServerConnection

from tests.integration.ingestor_support import (
    RAW,
    Numbered,
    RestVenue,
    entries,
    hold_open,
    ingesting_with_rest,
    rest_frames,
    send_trades,
    sending,
)
from tests.waits import until
from tickpipe.common.names import Partition
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.shell import Ingestor

DEPTH = ("depth@100ms",)


class FakeRest(RestVenue):
    """Serve /api/v3/depth and /api/v3/historicalTrades; the first call can answer 429."""

    routes: ClassVar[dict[str, str]] = {
        "/api/v3/depth": "depth",
        "/api/v3/historicalTrades": "historical",
    }

    def __init__(self, *, throttle_first: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.throttle_first = throttle_first

    async def depth(self, request: web.Request) -> web.Response:
        self.calls.append((request.path, dict(request.query)))
        if self.throttle_first and len(self.calls) == 1:
            return web.json_response({"code": -1003}, status=429, headers={"Retry-After": "1"})
        return web.json_response({"lastUpdateId": 42, "bids": [["1.0", "2.0"]], "asks": []})

    async def historical(self, request: web.Request) -> web.Response:
        self.calls.append((request.path, dict(request.query)))
        first, limit = int(request.query["fromId"]), int(request.query["limit"])
        return web.json_response([{"id": n, "price": "1.0"} for n in range(first, first + limit)])


def test_a_reconnect_that_skipped_trades_is_backfilled_over_rest() -> None:
    @Numbered
    async def handler(ws: ServerConnection, connection: int) -> None:
        await send_trades(ws, range(1, 4) if connection == 1 else range(2500, 2503))
        if connection == 1:
            await ws.close(1001, "going away")
            return
        await hold_open(ws)

    async def scenario() -> list[RawFrame]:
        fake = FakeRest()
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting_with_rest(handler, fake, redis) as ingestor:
            await until(lambda: ingestor.stats.rest_backfilled == 2496)
        assert [c[1]["fromId"] for c in fake.calls] == ["4", "1004", "2004"]
        assert ingestor.stats.trade_gaps == 1
        return await entries(redis, RAW)

    got = asyncio.run(scenario())
    pages = rest_frames(got, "trades_backfill")
    ids = [t["id"] for page in pages for t in page["response"]]
    assert ids == list(range(4, 2500))
    assert pages[0]["symbol"] == "BTCUSDT"
    assert pages[0]["request"]["path"] == "/api/v3/historicalTrades"
    gaps = [json.loads(f.data) for f in got if f.kind == "marker"]
    gap = next(g for g in gaps if g["event"] == "gap")
    assert (gap["first_id"], gap["last_id"]) == (4, 2499)


def test_depth_snapshots_at_connect_and_on_request_wait_for_retry_after() -> None:
    frame = {"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "u": 1}}
    handler = sending([json.dumps(frame, separators=(",", ":"))])

    async def scenario() -> tuple[list[RawFrame], FakeRest]:
        fake = FakeRest(throttle_first=True)
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting_with_rest(handler, fake, redis, channels=DEPTH) as ingestor:
            await until(lambda: ingestor.stats.rest_snapshots == 1)
            control = ingestor.settings.keys.control(Partition("binance", 0))
            await redis.xadd(control, {"action": "snapshot", "symbol": "BTCUSDT", "reason": "gap"})
            await until(lambda: ingestor.stats.rest_snapshots == 2)
        return await entries(redis, RAW), fake

    got, fake = asyncio.run(scenario())
    snaps = rest_frames(got, "depth_snapshot")
    assert [s["reason"] for s in snaps] == ["connected", "gap"]
    assert snaps[0]["response"]["lastUpdateId"] == 42
    assert snaps[0]["request"]["params"] == {"symbol": "BTCUSDT", "limit": "1000"}
    assert len(fake.calls) == 3  # one 429, then two snapshots


def test_a_depth_gap_is_marked_and_a_fresh_snapshot_fetched() -> None:
    snapshot_taken = asyncio.Event()

    def depth(first: int, last: int) -> str:
        data = {"e": "depthUpdate", "s": "BTCUSDT", "U": first, "u": last, "b": [], "a": []}
        return json.dumps({"stream": "btcusdt@depth@100ms", "data": data}, separators=(",", ":"))

    async def handler(ws: ServerConnection) -> None:
        await ws.send(depth(1, 5))
        await snapshot_taken.wait()
        await ws.send(depth(6, 9))
        await ws.send(depth(20, 25))  # 10..19 never came
        await hold_open(ws)

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        fake = FakeRest()
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting_with_rest(handler, fake, redis, channels=DEPTH) as ingestor:
            await until(lambda: ingestor.stats.rest_snapshots == 1)
            snapshot_taken.set()
            await until(lambda: ingestor.stats.rest_snapshots == 2)
        return await entries(redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    assert ingestor.stats.depth_gaps == 1
    gap = next(json.loads(f.data) for f in got if f.kind == "marker" and '"gap"' in f.data)
    assert (gap["kind"], gap["first_id"], gap["last_id"]) == ("depth_ids", 10, 19)
    assert [s["reason"] for s in rest_frames(got, "depth_snapshot")] == ["connected", "depth gap"]
