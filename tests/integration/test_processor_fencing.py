"""A member that thaws after losing its lease reads nothing and loses nothing (fakeredis).

The race of a frozen member: it stops between two reads, its lease expires, another member takes
the partition over, and then it thaws and sends the read it was about to send. Each member here
is a real lane loop; a gate in front of :meth:`processor.link.Pipe.send_read` holds one member
exactly there, so the race happens the same way on every run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import orjson
import pytest

from tests.integration.test_processor_shell import P, start
from tests.waits import until
from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.schema import RawFrame, Trade, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.processor import link as link_module
from tickpipe.processor.core import PartitionState

LEASE_MS = 3000


def _settings(instance: str) -> Settings:
    return Settings(
        namespace="fence", symbols=("BTCUSDT",), instance=instance, batch_size=10,
        health_interval_s=0.05,
    )  # fmt: skip


def _trade_frames(first_id: int, count: int) -> list[RawFrame]:
    now_ns = time.time_ns()
    out = []
    for trade_id in range(first_id, first_id + count):
        payload = {
            "e": "trade", "E": now_ns // 1_000_000, "s": "BTCUSDT", "t": trade_id,
            "p": f"{60000 + trade_id % 7}.10", "q": "0.01", "T": now_ns // 1_000_000, "m": True,
        }  # fmt: skip
        data = orjson.dumps({"stream": "btcusdt@trade", "data": payload}).decode()
        out.append(RawFrame("ws", "binance", "c1", trade_id, now_ns, data, "market"))
    return out


async def _write(redis: Any, settings: Settings, frames: list[RawFrame]) -> None:
    for frame in frames:
        await redis.xadd(settings.keys.raw(P), frame.to_fields())


class _Gate:
    """Hold one member in front of its next read until released."""

    def __init__(self) -> None:
        self.armed = False
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    async def pass_through(self) -> None:
        if not self.armed:
            return
        self.armed = False
        self.held.set()
        await self.released.wait()


@pytest.fixture
def gates(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, _Gate]]:
    table: dict[str, _Gate] = {}
    original = link_module.Pipe.send_read

    async def gated(self: Any, *args: Any, **kwargs: Any) -> None:
        gate = table.get(self.link.instance)
        if gate is not None and self.lane.name == str(P):  # the partition's lane, not the private
            await gate.pass_through()
        await original(self, *args, **kwargs)

    monkeypatch.setattr(link_module.Pipe, "send_read", gated)
    yield table


class _LeaseLostLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("lease lost"):
            self.count += 1


async def _run_then_freeze(
    gates: dict[str, _Gate], redis: Any, settings: Settings, count: int, **kw: Any
) -> tuple[asyncio.Task[None], asyncio.Event, _Gate]:
    """Run member a over ``count`` trades, then freeze it in front of its next read."""
    await _write(redis, settings, _trade_frames(1, count))
    gate = gates["a"] = _Gate()
    task, stop = start(settings, redis, **kw)

    async def done() -> bool:
        return await redis.xlen(settings.keys.trades(P)) == count

    await until(done)
    gate.armed = True
    await asyncio.wait_for(gate.held.wait(), 8)
    return task, stop, gate


@pytest.mark.parametrize(
    "direct,scripted",
    [(True, True), (False, True), (True, False)],
    ids=["pipelined", "redis-py-script", "watch-get"],
)
def test_a_member_that_thaws_after_a_takeover_reads_nothing_and_no_trade_is_lost(
    gates: dict[str, _Gate], monkeypatch: pytest.MonkeyPatch, direct: bool, scripted: bool
) -> None:
    original = link_module.Link.__init__

    def init(self: link_module.Link, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.seam.scripted = scripted  # False: as on a server that refuses EVAL

    monkeypatch.setattr(link_module.Link, "__init__", init)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        first, second = _settings("a"), _settings("b")
        keys = first.keys
        lost = _LeaseLostLog()
        logging.getLogger("tickpipe.processor").addHandler(lost)
        kw = {
            "lease_ms": LEASE_MS, "renew_s": 0.05, "retry_s": 0.05, "block_ms": 50,
            "direct": direct,
        }  # fmt: skip
        try:
            # A freezes in front of its next read; its lease runs out (deleted: expired).
            task_a, stop_a, gate_a = await _run_then_freeze(gates, redis, first, 30, **kw)
            await redis.delete(keys.lease(P))

            gate_b = gates["b"] = _Gate()
            gate_b.armed = True
            task_b, stop_b = start(second, redis, **kw)
            await asyncio.wait_for(gate_b.held.wait(), 8)  # B owns the lease, about to read
            assert await redis.get(keys.lease(P)) == b"b"
            await _write(redis, first, _trade_frames(31, 60))  # more than A's reads can take

            # A thaws and sends the read it was about to send: it must not take anything.
            gate_a.released.set()

            async def a_fenced() -> bool:
                return lost.count >= 1

            await until(a_fenced)
            gate_b.released.set()
            last_raw = (await redis.xrevrange(keys.raw(P), count=1))[0][0].decode()

            async def everything_read_and_b_committed() -> bool:
                (group,) = await redis.xinfo_groups(keys.raw(P))
                consumers = await redis.xinfo_consumers(keys.raw(P), GROUP_PROCESSOR)
                b_pending = sum(c["pending"] for c in consumers if c["name"] == b"b")
                return group["last-delivered-id"].decode() == last_raw and b_pending == 0

            await until(everything_read_and_b_committed)
            stop_b.set()
            await asyncio.wait_for(task_b, 8)

            # A takes the partition over again and claims whatever its thawed read took.
            async def a_owns_and_idle() -> bool:
                pending = await redis.xpending(keys.raw(P), GROUP_PROCESSOR)
                return await redis.get(keys.lease(P)) == b"a" and pending["pending"] == 0

            await until(a_owns_and_idle)
            await asyncio.sleep(0)  # let A finish the batch it may be committing
            stop_a.set()
            await asyncio.wait_for(task_a, 8)

            trades = [Trade.from_fields(decode_fields(f)) for _, f in await redis.xrange(
                keys.trades(P))]  # fmt: skip
            ids = [int(t.trade_id) for t in trades]
            assert sorted(ids) == list(range(1, 91)), f"missing {set(range(1, 91)) - set(ids)}"
            assert len(ids) == len(set(ids))
            blob = await redis.get(keys.checkpoint(P))
            counters = PartitionState.from_bytes(blob, str(P), "binance").counters
            assert counters["reprocessed"] == 0  # the fence alone: the thawed read took nothing
        finally:
            logging.getLogger("tickpipe.processor").removeHandler(lost)

    asyncio.run(scenario())


def test_entries_a_reader_took_past_the_checkpoint_are_processed_at_the_takeover(
    gates: dict[str, _Gate],
) -> None:
    """A reader that bypassed the fence (an older member in a rolling upgrade, a script by
    hand) leaves entries pending below the owner's checkpoint: the next owner processes them."""

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        first, second = _settings("a"), _settings("b")
        keys = first.keys
        kw = {"lease_ms": LEASE_MS, "renew_s": 0.05, "retry_s": 0.05, "block_ms": 50}
        task_a, stop_a, gate_a = await _run_then_freeze(gates, redis, first, 10, **kw)
        await _write(redis, first, _trade_frames(11, 10))
        await redis.xreadgroup(GROUP_PROCESSOR, "ghost", {keys.raw(P): ">"}, count=5)
        gate_a.released.set()
        last_raw = (await redis.xrevrange(keys.raw(P), count=1))[0][0].decode()

        async def a_committed_past_the_ghost() -> bool:
            blob = await redis.get(keys.checkpoint(P))
            return PartitionState.from_bytes(blob, str(P), "binance").last_entry_id == last_raw

        await until(a_committed_past_the_ghost)
        stop_a.set()
        await asyncio.wait_for(task_a, 8)
        assert (await redis.xpending(keys.raw(P), GROUP_PROCESSOR))["pending"] == 5

        task_b, stop_b = start(second, redis, **kw)

        async def b_idle() -> bool:
            pending = await redis.xpending(keys.raw(P), GROUP_PROCESSOR)
            return await redis.get(keys.lease(P)) == b"b" and pending["pending"] == 0

        await until(b_idle)
        stop_b.set()
        await asyncio.wait_for(task_b, 8)
        ids = [int(decode_fields(f)["trade_id"]) for _, f in await redis.xrange(keys.trades(P))]
        assert sorted(ids) == list(range(1, 21)) and len(ids) == 20
        blob = await redis.get(keys.checkpoint(P))
        counters = PartitionState.from_bytes(blob, str(P), "binance").counters
        assert (counters["reprocessed"], counters["duplicate_trades"]) == (5, 0)

    asyncio.run(scenario())
