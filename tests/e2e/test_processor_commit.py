"""The processor's fenced Lua commit on a real redis-server: exact bytes, fencing, clean pipe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.names import GROUP_PROCESSOR, Keys, Partition
from common.schema import RawFrame
from common.settings import Settings
from processor.lanes import Commit, PartitionLane
from processor.link import LeaseLost, Link
from tests.e2e.conftest import RedisServer

pytestmark = pytest.mark.e2e

P = Partition("binance", 0)
ODD = 'quote " backslash \\ newline \n nul \x00 tab \t del \x7f é 日本 𝄞 \u2028 {"a":[1]}'


def _frames(count: int) -> list[RawFrame]:
    out = []
    for n in range(1, count + 1):
        data = (
            f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{n},'
            f'"p":"6{n % 7}000.10","q":"0.0{n % 9 + 1}","T":{1_700_000_000_000 + n},"m":true}}}}'
        )
        out.append(RawFrame("ws", "binance", "c1", n, 10 + n, data, "market"))
    return out


def test_commit_on_a_real_server_writes_exact_bytes_and_refuses_a_stale_lease(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        settings = Settings(namespace="pc", symbols=("BTCUSDT",), instance="m1")
        keys: Keys = settings.keys
        for frame in _frames(1500):
            await client.xadd(keys.raw(P), frame.to_fields())  # type: ignore[arg-type]
        await client.xgroup_create(keys.raw(P), GROUP_PROCESSOR, id="0")
        await client.set(keys.lease(P), "m1", px=5000)
        lane = PartitionLane(settings, P)
        link = Link(client, "m1", 5000)
        assert link.direct
        async with link.pipe(lane) as pipe:
            await pipe.send_read(">", 1000)
            first, _ = await pipe.collect()
            assert first is not None and len(first) == 1000
            await pipe.send_read(">", 1000)  # read ahead, as the shell does
            commit = lane.process(first, 42)
            odd = (lane.dead_letter_key, {"reason": ODD, "entry_id": "1-1", "data": ODD[::-1]})
            commit = Commit([*commit.outputs, odd], commit.checkpoint, commit.acked, 1000)
            second, _ = await pipe.collect()
            await pipe.send_commit(commit, 1.0)
            _, confirmed = await pipe.collect()
        assert confirmed == [(commit, 1.0)] and second is not None and len(second) == 500
        expected: dict[str, list[dict[bytes, bytes]]] = {}
        for key, fields in commit.outputs:
            expected.setdefault(key, []).append({k.encode(): v.encode() for k, v in fields.items()})
        for key, entries in expected.items():
            got: Any = await client.xrange(key)
            assert [fields for _, fields in got] == entries
            assert [list(f) for _, f in got] == [list(f) for f in entries]  # field order too
        assert await client.get(keys.checkpoint(P)) == commit.checkpoint
        pending: Any = await client.xpending(keys.raw(P), GROUP_PROCESSOR)
        assert pending["pending"] == 500  # the batch read ahead, not yet committed

        # Another member owns the lane now: the next commit writes nothing at all.
        later = lane.process(second, 43)
        await client.set(keys.lease(P), "m2", px=5000)
        lengths = {key: await client.xlen(key) for key, _ in later.outputs}
        with pytest.raises(LeaseLost):
            async with link.pipe(lane) as pipe:
                await pipe.send_commit(later, 2.0)
                await pipe.collect()
        assert {key: await client.xlen(key) for key in lengths} == lengths
        assert await client.get(keys.checkpoint(P)) == commit.checkpoint
        pending = await client.xpending(keys.raw(P), GROUP_PROCESSOR)
        assert pending["pending"] == 500 and await client.get(keys.lease(P)) == b"m2"
        assert await client.ping()  # every connection went back to the pool usable
        await client.aclose()

    asyncio.run(main())
