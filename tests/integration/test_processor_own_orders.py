"""The processor stage hands a strategy its own order fills once, across a crash and takeover.

A plug-in (by ``module:Class`` path) buys on its first trade and sells what each fill of its own
order filled. The order's updates are written to ``{V}:order-updates`` as the private lane
writes them; the member is killed after the first fill's exit signal and another member takes
the partition over. Ground truth: one exit signal per fill, none repeated, and the position in
the checkpoint equals the fills. A refusal the trader records on ``{V}:orders`` behind more
than a page of other order events reaches the strategy once too, and so do the instrument
filters the trader records there.
"""

from __future__ import annotations

import asyncio
import dataclasses

import fakeredis

from tests.integration.test_processor_shell import P, processing, real_frames, start, write_raw
from tests.unit.test_processor_own_orders import update
from tests.waits import until
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.processor.state import PartitionState

SETTINGS = Settings(
    namespace="po",
    symbols=("BTCUSDT",),
    instance="m1",
    strategies=("tests.unit.test_processor_own_orders:Follower",),
    batch_size=50,
    health_interval_s=0.05,
)


async def signals(redis: fakeredis.FakeAsyncRedis) -> list[Signal]:
    entries = await redis.xrange(SETTINGS.keys.signals(P))
    return [Signal.from_fields(decode_fields(f)) for _, f in entries]


async def exits(redis: fakeredis.FakeAsyncRedis) -> list[Signal]:
    return [s for s in await signals(redis) if s.side == "sell"]


def test_own_fills_reach_the_strategy_once_across_a_crash_and_takeover() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        keys = SETTINGS.keys
        frames = real_frames()
        await write_raw(redis, SETTINGS, frames[:800])
        task, _ = start(SETTINGS, redis, lease_ms=400)

        async def entry_signalled() -> bool:
            return bool(await signals(redis))

        await until(entry_signalled)
        (entry,) = await signals(redis)
        cid = client_order_id_for(entry.signal_id)
        updates = keys.order_updates("binance")
        await redis.xadd(
            updates, update(cid, "PARTIALLY_FILLED", "0.5", "61800", "101").to_fields()
        )
        await write_raw(redis, SETTINGS, frames[800:1200])

        async def first_exit() -> bool:
            return len(await exits(redis)) == 1

        await until(first_exit)
        await redis.xadd(updates, update(cid, "FILLED", "1.5", "61700", "102").to_fields())
        task.cancel()  # a crash: no lease release, no final batch
        await asyncio.gather(task, return_exceptions=True)

        orders = keys.orders("binance")
        noise = {"event": "ack", "client_order_id": "tp-other", "ts": "1"}
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(2500):  # more than a page of order events that are not refusals
                pipe.xadd(orders, noise)
            rules = InstrumentFilters("BTCUSDT", tick_size="0.01", min_notional="5")
            pipe.xadd(orders, {"event": "instruments", "ts": "4", **rules.to_fields()})
            pipe.xadd(orders, {"event": "rejected", "client_order_id": cid, "symbol": "BTCUSDT",
                               "side": "buy", "qty": "2", "ts": "5", "reason": "kill switch",
                               "stage": "risk"})  # fmt: skip
            await pipe.execute()
        second = dataclasses.replace(SETTINGS, instance="m2")
        async with processing(second, redis, lease_ms=400, stop_timeout_s=10):
            await write_raw(redis, SETTINGS, frames[1200:])
            last = (await redis.xrevrange(keys.raw(P), count=1))[0][0]

            async def all_read() -> bool:
                groups = await redis.xinfo_groups(keys.raw(P))
                group = next(g for g in groups if g["name"] == GROUP_PROCESSOR.encode())
                return bool(group["pending"] == 0 and group["last-delivered-id"] == last)

            await until(all_read, timeout_s=30)

        got = [(s.qty, s.price, s.reason) for s in await exits(redis)]
        assert got == [("0.5", "61800", "exit 101"), ("1.5", "61700", "exit 102")], got
        assert len({s.signal_id for s in await signals(redis)}) == len(await signals(redis))
        blob = await redis.get(keys.checkpoint(P))
        state = PartitionState.from_settings(SETTINGS, str(P), "binance", blob)
        assert state.own.positions == {"follower|BTCUSDT": ["2", "61725"]}
        (follower,) = state.strategies
        refused = [e for e in follower.log if e[0] == "update" and e[2] == "REJECTED"]  # type: ignore[attr-defined]
        assert refused == [["update", cid, "REJECTED", "risk: kill switch"]]
        told = [e for e in follower.log if e[0] == "instruments"]  # type: ignore[attr-defined]
        assert told == [["instruments", "BTCUSDT", "0.01", "5"]]

    asyncio.run(scenario())
