"""The DataFrame readers read only the requested range of a large stream (real redis-server).

200,000 trades, 20 a second for 10,000 s, are stored with entry ids at their storing time (30 ms
after their event time). Reading one minute must return exactly that minute's trades and fetch
only the entries stored in it (plus the :data:`frames.SKEW_MS` before it and one page past it),
counted through the client: the number of entries fetched, not the time taken.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pandas as pd
import pytest
import redis.asyncio as aioredis

from common import frames
from common.names import Partition
from common.settings import Settings
from tests.e2e.conftest import RedisServer

pytestmark = pytest.mark.e2e

SETTINGS = Settings(namespace="rng", symbols=("BTCUSDT", "ETHUSDT"), instance="t")
P = Partition("binance", 0)
T0_MS = 1_723_161_600_000
STEP_MS = 50
COUNT = 200_000
LAG_NS = 30_000_000


class Counting:
    """A redis.asyncio client that counts the stream entries it hands back."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.fetched = 0
        self.calls = 0

    async def xrange(self, *args: Any, **kwargs: Any) -> Any:
        page = await self.redis.xrange(*args, **kwargs)
        self.fetched += len(page)
        self.calls += 1
        return page


def _fill(server: RedisServer) -> None:
    client = server.client()
    stream = SETTINGS.keys.trades(P)
    for start in range(0, COUNT, 20_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 20_000):
            ms = T0_MS + i * STEP_MS
            pipe.xadd(stream, {
                "v": "1", "venue": "binance", "symbol": ("BTCUSDT", "ETHUSDT")[i % 2],
                "trade_id": str(i), "price": "61000.5", "qty": "0.001", "side": "buy",
                "ts_event": str(ms * 1_000_000 - LAG_NS), "ts_recv": str(ms * 1_000_000),
                "ts_proc": "",
            }, id=f"{ms}-0")  # fmt: skip
        pipe.execute()
    assert client.xlen(stream) == COUNT
    client.close()


@pytest.mark.parametrize("page", [500, 5000])
def test_one_minute_of_a_large_stream_fetches_only_that_minute(
    redis_server: RedisServer, page: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(redis_server)
    monkeypatch.setattr(frames, "PAGE", page)
    start_ms = T0_MS + 5_000_000  # the middle of the stream
    start, end = start_ms * 1_000_000, (start_ms + 60_000) * 1_000_000

    async def go() -> tuple[pd.DataFrame, Counting]:
        redis = aioredis.Redis.from_url(redis_server.url)
        counting = Counting(redis)
        try:
            df = await frames.read_trades(cast(aioredis.Redis, counting), SETTINGS, "BTCUSDT",
                                          start, pd.Timestamp(end, tz="UTC"))  # fmt: skip
        finally:
            await redis.aclose()
        return df, counting

    df, counting = asyncio.run(go())
    expected = [
        str(i) for i in range(0, COUNT, 2)
        if start <= (T0_MS + i * STEP_MS) * 1_000_000 - LAG_NS < end
    ]  # fmt: skip
    assert list(df["trade_id"]) == expected and len(expected) == 600
    stored_in_window = (60_000 + 5_000) // STEP_MS  # the minute and the 5 s skew allowance
    print(f"page {page}: fetched {counting.fetched:,} entries in {counting.calls} XRANGE calls")
    assert counting.fetched <= stored_in_window + page
    assert counting.fetched < COUNT // 30
    # the synchronous wrapper gives the same frame
    settings = Settings(redis_url=redis_server.url, namespace="rng", symbols=SETTINGS.symbols)
    pd.testing.assert_frame_equal(frames.read(settings, "trades", "BTCUSDT", start, end), df)
