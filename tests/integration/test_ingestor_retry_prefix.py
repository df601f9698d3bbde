"""A batch interrupted mid-write is retried without the prefix Redis already appended."""

from __future__ import annotations

import asyncio

import fakeredis

from common.schema import RawFrame
from ingestor.writer import Item, _not_yet_written

A, B = "tp:{binance:0}:raw", "tp:{binance:1}:raw"


def frame(seq: int, kind: str = "ws", ts: int = 0) -> RawFrame:
    return RawFrame(kind, "binance", "c1", seq, ts or 100 + seq, f'{{"n":{seq}}}')


def test_only_the_unwritten_suffix_of_each_stream_is_kept() -> None:
    batch: list[Item] = [
        (A, frame(1)), (B, frame(1)), (A, frame(2)),
        (A, frame(2, kind="marker", ts=500)),  # same seq as the frame before it
        (B, frame(2)), (A, frame(3)),
    ]  # fmt: skip

    async def main() -> list[Item]:
        redis = fakeredis.FakeAsyncRedis()
        await redis.xadd(A, {"x": "older entry"})
        for stream, f in batch[:3]:  # the link dropped after three appends
            await redis.xadd(stream, f.to_fields())
        return await _not_yet_written(redis, batch)

    assert asyncio.run(main()) == [batch[3], batch[4], batch[5]]


def test_nothing_is_dropped_when_nothing_of_the_batch_landed() -> None:
    batch: list[Item] = [(A, frame(7)), (A, frame(8))]

    async def main() -> list[Item]:
        redis = fakeredis.FakeAsyncRedis()
        await redis.xadd(A, frame(6).to_fields())
        await redis.xadd(B, {"garbage": "not a raw frame"})
        return await _not_yet_written(redis, [*batch, (B, frame(1))])

    assert asyncio.run(main()) == [*batch, (B, frame(1))]
