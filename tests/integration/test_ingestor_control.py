"""Integration tests of channels, stream spreading, pacing and runtime subscription changes."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fakeredis
import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from tests.integration.ingestor_support import (
    RAW,
    entries,
    fast_ingestor,
    running,
    settings_for,
    venue,
)
from tests.waits import until
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.control import request_subscription_change
from tickpipe.ingestor.shell import Ingestor


class FakeVenue:
    """Track each connection's streams and message times; refuse streams of unknown symbols."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.streams: dict[int, set[str]] = {}
        self.sent_at: dict[int, list[float]] = {}
        self.methods: list[tuple[str, list[str]]] = []
        self.over_cap = False

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        me = len(self.streams)
        query = parse_qs(urlsplit(ws.request.path).query)
        mine = self.streams[me] = set()
        self.sent_at[me] = []
        for name in "/".join(query.get("streams", [])).split("/"):
            if name:
                mine.add(name)
        await self._deliver(ws, mine)
        async for message in ws:
            self.sent_at[me].append(time.monotonic())
            request = orjson.loads(message)
            params: list[str] = request["params"]
            self.methods.append((request["method"], params))
            if any(p.split("@")[0].upper() not in self.known for p in params):
                error = {"code": 2, "msg": "Invalid request: invalid stream"}
                await ws.send(orjson.dumps({"error": error, "id": request["id"]}).decode())
                continue
            if request["method"] == "SUBSCRIBE":
                mine.update(params)
            else:
                mine.difference_update(params)
            self.over_cap = self.over_cap or len(mine) > 1024
            await ws.send(orjson.dumps({"result": None, "id": request["id"]}).decode())
            await self._deliver(ws, mine)

    async def _deliver(self, ws: ServerConnection, streams: set[str]) -> None:
        for name in sorted(streams)[:3]:
            data = {"e": "trade", "s": name.split("@")[0].upper(), "t": 1}
            await ws.send(orjson.dumps({"stream": name, "data": data}).decode())


def test_two_thousand_streams_are_spread_within_the_caps() -> None:
    symbols = tuple(f"S{n}USDT" for n in range(1000))
    fake = FakeVenue(set(symbols))

    async def scenario() -> Ingestor:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(fake.handler) as url:
            settings = settings_for(url, symbols=symbols, channels=("trade", "bookTicker"))
            ingestor = fast_ingestor(settings, redis)
            async with running(ingestor):
                await until(lambda: sum(len(s) for s in fake.streams.values()) == 2000, 10)
        return ingestor

    ingestor = asyncio.run(scenario())
    assert len(fake.streams) == 2 and not fake.over_cap
    assert sorted(len(s) for s in fake.streams.values()) == [976, 1024]
    assert set.union(*fake.streams.values()) == {
        f"s{n}usdt@{c}" for n in range(1000) for c in ("trade", "bookTicker")
    }
    for times in fake.sent_at.values():
        assert times  # long lists are subscribed by message...
        for i, t in enumerate(times):  # ...never more than 4 in any second
            assert len([u for u in times[i:] if u < t + 1.0]) <= 4
    assert len(ingestor.connections) == 2


def markers(got: list[RawFrame], event: str) -> list[dict[str, Any]]:
    out = [json.loads(f.data) for f in got if f.kind == "marker"]
    return [m for m in out if m["event"] == event]


def test_runtime_subscribe_and_unsubscribe_through_the_control_stream() -> None:
    fake = FakeVenue({"BTCUSDT", "ETHUSDT"})

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(fake.handler) as url:
            settings = settings_for(url, channels=("trade", "bookTicker"))
            ingestor = fast_ingestor(settings, redis)
            async with running(ingestor):
                await until(lambda: ingestor.stats.frames_received >= 2)
                await request_subscription_change(redis, settings, "subscribe", "ethusdt,NOPEUSDT")
                await until(lambda: "ethusdt@bookTicker" in fake.streams[0])
                await until(lambda: ingestor.stats.subscriptions_refused == 2)
                await request_subscription_change(redis, settings, "unsubscribe", ["BTCUSDT"])
                await until(lambda: fake.streams[0] == {"ethusdt@trade", "ethusdt@bookTicker"})
            control = await redis.xrange(settings.keys.control(Partition("binance", 0)))
            assert len(control) == 2
        return await entries(redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    refused = markers(got, "subscription_refused")
    assert sorted(m["stream"] for m in refused) == ["nopeusdt@bookTicker", "nopeusdt@trade"]
    assert all("invalid stream" in m["error"] for m in refused)
    streams = ingestor.connections[0].streams
    assert streams == ["ethusdt@trade", "ethusdt@bookTicker"]
    assert ("UNSUBSCRIBE", ["btcusdt@trade", "btcusdt@bookTicker"]) in fake.methods


def test_subscriptions_added_at_runtime_survive_a_restart() -> None:
    fake = FakeVenue({"BTCUSDT", "ETHUSDT"})
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        await fake.handler(ws)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            settings = settings_for(url)
            await request_subscription_change(redis, settings, "subscribe", "ETHUSDT")
            ingestor = fast_ingestor(settings, redis)
            async with running(ingestor):
                await until(lambda: ingestor.stats.frames_received >= 2)

    asyncio.run(scenario())
    assert paths == ["/stream?streams=btcusdt@trade/ethusdt@trade"]


def test_request_subscription_change_routes_symbols_to_their_partitions() -> None:
    async def scenario() -> dict[int, list[dict[bytes, bytes]]]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        settings = settings_for("ws://127.0.0.1:9", shards=4)
        await request_subscription_change(redis, settings, "subscribe", "BTCUSDT,ETHUSDT,XRPUSDT")
        with pytest.raises(ValueError, match="subscribe or unsubscribe"):
            await request_subscription_change(redis, settings, "explode", "BTCUSDT")
        with pytest.raises(ValueError, match="not a symbol"):
            await request_subscription_change(redis, settings, "subscribe", "BTC/USDT")
        out = {}
        for shard in range(4):
            got = await redis.xrange(settings.keys.control(Partition("binance", shard)))
            out[shard] = [fields for _, fields in got]
        return out

    by_shard = asyncio.run(scenario())
    for symbol in ("BTCUSDT", "ETHUSDT", "XRPUSDT"):
        entries_of = by_shard[shard_for(symbol, 4)]
        assert any(symbol in f[b"symbols"].decode().split(",") for f in entries_of)
    assert all(f[b"action"] == b"subscribe" for fs in by_shard.values() for f in fs)
