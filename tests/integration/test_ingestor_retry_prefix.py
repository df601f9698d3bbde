"""A batch interrupted mid-write is retried without the prefix Redis already appended."""

from __future__ import annotations

import asyncio

import fakeredis

from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.writer import Item, _not_yet_written

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


def test_a_restarted_ingestor_learns_the_last_trade_ids_from_raw() -> None:
    """Trades sent before a crash but never written are then backfilled: the hole is visible."""
    from tickpipe.common.settings import load_settings
    from tickpipe.ingestor.shell import Ingestor

    settings = load_settings({"TICKPIPE_SYMBOLS": "BTCUSDT,ETHUSDT"}, dotenv_path=None)

    def trade(symbol: str, trade_id: int) -> str:
        return (f'{{"stream":"{symbol.lower()}@trade","data":{{"e":"trade","s":"{symbol}",'
                f'"t":{trade_id},"p":"1","q":"1","T":1,"m":true}}}}')  # fmt: skip

    async def main() -> dict[str, int]:
        redis = fakeredis.FakeAsyncRedis()
        raw = settings.keys.raw(next(iter(settings.partitions())))
        for n, (symbol, tid) in enumerate([("BTCUSDT", 41), ("ETHUSDT", 7), ("BTCUSDT", 42)]):
            await redis.xadd(
                raw, RawFrame("ws", "binance", "c", n + 1, n, trade(symbol, tid)).to_fields()
            )
        await redis.xadd(raw, RawFrame("marker", "binance", "c", 3, 9, '{"event":"x"}').to_fields())
        ingestor = Ingestor(settings, redis=redis)
        await ingestor._seed_trade_ids(redis)
        return dict(ingestor.gaps.trade_ids.last)

    assert asyncio.run(main()) == {"BTCUSDT": 42, "ETHUSDT": 7}
