"""The DataFrame readers read only the requested range of a large stream (real redis-server).

A million trades, 20 a second for 50,000 s, are stored with entry ids at their storing time (30 ms
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

from tests.e2e.conftest import RedisServer
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.tools import frames

pytestmark = pytest.mark.e2e

SETTINGS = Settings(namespace="rng", symbols=("BTCUSDT", "ETHUSDT"), instance="t")
P = Partition("binance", 0)
T0_MS = 1_723_161_600_000
STEP_MS = 50
COUNT = 1_000_000
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


#: Appends trades ``ARGV[1]`` .. ``ARGV[2]`` - 1 inside Redis (a million XADDs from Python would
#: take most of a minute; the same entries made by a script take a few seconds).
_FILL = """
local t0, step, lag_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local symbols = {"BTCUSDT", "ETHUSDT"}
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do
  local ms = t0 + i * step  -- whole ms fit a double exactly; ns are written as text
  local text = string.format("%d", ms)
  redis.call("XADD", KEYS[1], text .. "-0", "v", "1", "venue", "binance",
    "symbol", symbols[(i % 2) + 1], "trade_id", tostring(i), "price", "61000.5",
    "qty", "0.001", "side", "buy", "ts_event", string.format("%d", ms - lag_ms) .. "000000",
    "ts_recv", text .. "000000", "ts_proc", "")
end
return 1
"""


def _fill(server: RedisServer) -> None:
    client = server.client()
    stream = SETTINGS.keys.trades(P)
    for start in range(0, COUNT, 100_000):
        client.eval(_FILL, 1, stream, start, start + 100_000, T0_MS, STEP_MS, LAG_NS // 1_000_000)
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
