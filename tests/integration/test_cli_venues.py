"""The operator commands with several venues in one deployment: streams, kill switch, subscribe."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from tests.venue_settings import two_venues
from tickpipe.common.names import Partition
from tickpipe.tools.ops import change_subscription, resolve_streams, set_kill_switch

SETTINGS = two_venues("ops2")
K = SETTINGS.keys


def test_stream_names_cover_every_venue() -> None:
    assert resolve_streams(SETTINGS, "trades") == [
        K.trades(Partition("binance", 0)),
        K.trades(Partition("alpaca", 0)),
    ]
    assert resolve_streams(SETTINGS, "orders") == [K.orders("binance"), K.orders("alpaca")]


def test_the_kill_switch_stops_every_venue() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        assert await set_kill_switch(redis, SETTINGS, "on")
        assert await redis.exists(K.kill_switch("binance"), K.kill_switch("alpaca")) == 2
        assert not await set_kill_switch(redis, SETTINGS, "off")
        assert await redis.exists(K.kill_switch("binance"), K.kill_switch("alpaca")) == 0

    asyncio.run(scenario())


def test_a_subscription_goes_to_the_symbols_venue() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        written = await change_subscription(
            redis, SETTINGS, "subscribe", ["alpaca:AAPL", "BNBUSDT"]
        )
        assert written == [
            f"{K.control(Partition('alpaca', 0))} subscribe AAPL",
            f"{K.control(Partition('binance', 0))} subscribe BNBUSDT",
        ]
        with pytest.raises(ValueError, match="kraken is not a venue"):
            await change_subscription(redis, SETTINGS, "subscribe", ["kraken:XBT"])

    asyncio.run(scenario())
