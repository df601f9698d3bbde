"""Integration tests of the ingestor against the in-process mock exchange (mock_ws)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import fakeredis
import orjson
import pytest

from tests.integration.ingestor_support import running
from tests.rawread import rawframes
from tests.waits import until
from tickpipe.common.errors import ConfigError
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Secret, Settings
from tickpipe.ingestor.shell import Ingestor, run
from tickpipe.mock_ws import start_mock

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def settings_for(mock: Any, api_key: str, shards: int = 2) -> Settings:
    return Settings(
        namespace="itm",
        symbols=SYMBOLS,
        shards=shards,
        binance_ws_url=mock.ws_url,
        binance_ws_api_url=mock.ws_api_url,
        binance_api_key=Secret(api_key),
        binance_api_secret=Secret("mock-secret"),
        instance="mock-test",
        health_interval_s=0.1,
        ingestor_journal_max_mb=0,
        channels=("trade",),
    )


def test_trade_ids_in_raw_are_contiguous_per_symbol_and_user_data_is_subscribed() -> None:
    async def scenario() -> tuple[dict[str, list[RawFrame]], list[RawFrame], Ingestor, Any]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(binance_port=0, seed=1, symbols=SYMBOLS, trades_per_s=50)
        try:
            settings = settings_for(mock, "mock-key")
            ingestor = Ingestor(settings, redis=redis)
            async with running(ingestor):
                await until(lambda: ingestor.stats.private_subscribed)
                await until(lambda: ingestor.stats.frames_received >= 100)
                status = mock.status()
        finally:
            await mock.close()
        raw = {
            str(partition): rawframes(await redis.xrange(settings.keys.raw(partition)))
            for partition in settings.partitions()
        }
        private = rawframes(await redis.xrange(settings.keys.private_raw("binance")))
        return raw, private, ingestor, status

    raw, private, ingestor, status = asyncio.run(scenario())
    trade_ids: dict[str, list[int]] = defaultdict(list)
    for entries in raw.values():
        assert entries[0].kind == "marker" and entries[-1].kind == "marker"
        frames = [e for e in entries if e.kind == "ws"]
        assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
        for frame in frames:
            payload = orjson.loads(frame.data)
            if payload.get("stream", "").endswith("@trade"):
                trade_ids[payload["data"]["s"]].append(payload["data"]["t"])
    assert set(trade_ids) == set(SYMBOLS)
    for symbol, ids in trade_ids.items():
        assert len(ids) > 5, symbol
        assert ids == list(range(ids[0], ids[0] + len(ids))), f"{symbol} trade ids have a hole"
    assert status["user_data_subscriptions"] == 1
    replies = [orjson.loads(f.data) for f in private if f.kind == "ws"]
    # The venue's time answers (the clock offset) come before the subscription's answer.
    assert all("serverTime" in r["result"] for r in replies[:4])
    assert replies[4]["status"] == 200 and "subscriptionId" in replies[4]["result"]
    assert ingestor.stats.reconnects == 0


def test_wrong_api_key_stops_quickly_with_a_config_error() -> None:
    async def scenario() -> float:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(binance_port=0, seed=1, symbols=SYMBOLS, trades_per_s=50)
        try:
            started = time.monotonic()
            with pytest.raises(ConfigError, match="BINANCE_API_KEY") as info:
                await asyncio.wait_for(
                    run(settings_for(mock, "wrong-key", shards=1), asyncio.Event(), redis=redis),
                    10,
                )
            assert "wrong-key" not in str(info.value) and "mock-secret" not in str(info.value)
            return time.monotonic() - started
        finally:
            await mock.close()

    assert asyncio.run(scenario()) < 3.0
