"""The ingestor's direct RESP write path against a real redis-server: same results as a pipeline."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from common.schema import RawFrame
from ingestor.writer import _direct_pool, _send_direct
from tests.e2e.conftest import RedisServer

pytestmark = pytest.mark.e2e


def test_direct_writes_append_in_order_and_return_only_refused_entries(
    redis_server: RedisServer,
) -> None:
    async def main() -> tuple[list[int], list[dict[bytes, bytes]], bool]:
        client = aioredis.Redis.from_url(redis_server.url)
        pool = _direct_pool(client)
        assert pool is not None
        await client.set("not-a-stream", "x")
        batch = [
            ("tp:{binance:0}:raw", RawFrame("ws", "binance", "c1", n, 10 + n, f'{{"n":{n}}}'))
            for n in range(1, 2001)
        ]
        batch.insert(700, ("not-a-stream", RawFrame("ws", "binance", "c1", 0, 0, "{}")))
        failed = await _send_direct(pool, batch)
        entries = await client.xrange("tp:{binance:0}:raw")
        # the connection goes back to the pool in a clean state
        still_ok = bool(await client.ping())
        await client.aclose()
        return [batch.index(item) for item, _ in failed], [f for _, f in entries], still_ok

    failed_at, fields, still_ok = asyncio.run(main())
    assert failed_at == [700]
    assert [int(f[b"seq"]) for f in fields] == list(range(1, 2001))
    assert fields[0][b"data"] == b'{"n":1}' and still_ok


def test_test_doubles_use_the_pipeline_path() -> None:
    import fakeredis

    assert _direct_pool(fakeredis.FakeAsyncRedis()) is None
