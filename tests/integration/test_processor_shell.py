"""The processor shell against fakeredis: outputs, acks, leases, crashes and takeovers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
from functools import cache
from pathlib import Path
from typing import Any

import fakeredis
import orjson

from tests.realdata import BTCUSDT_CAPTURE, REALDATA
from tests.stages import stage_running
from tests.waits import until, xlen_at_least
from tickpipe.common.names import GROUP_PROCESSOR, Partition
from tickpipe.common.schema import OrderUpdate, RawFrame, Signal, Trade, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.processor.core import PartitionState, build_strategies, process_batch
from tickpipe.processor.lanes import decode_entries, private_lease_key
from tickpipe.processor.shell import run

REAL_REPORT = REALDATA / "nautilus_trader" / "ws_spot_execution_report_binance_us.json"
P = Partition("binance", 0)
FRAMES = 2500


@cache
def real_frames() -> tuple[RawFrame, ...]:
    out = []
    with gzip.open(BTCUSDT_CAPTURE, "rt") as lines:
        for seq, line in enumerate(lines):
            if seq == FRAMES:
                break
            recv, _, frame = line.rstrip("\n").partition(" ")
            if frame.startswith('{"stream"'):
                out.append(RawFrame("ws", "binance", "c1", seq, int(recv), frame))
            else:  # the REST depth snapshot, as the ingestor writes it
                body = {"symbol": "BTCUSDT", "response": orjson.loads(frame)}
                data = orjson.dumps(body).decode()
                snapshot = RawFrame("rest", "binance", "c1", seq, int(recv), data, "depth_snapshot")
                out.append(snapshot)
    return tuple(out)


def make_settings(instance: str = "m1", batch_size: int = 40) -> Settings:
    return Settings(
        namespace="pt",
        symbols=("BTCUSDT",),
        instance=instance,
        thresholds=(("BTCUSDT", "61835"),),
        hysteresis_bps="1",
        batch_size=batch_size,
        health_interval_s=0.05,
    )


async def write_raw(redis: Any, settings: Settings, frames: tuple[RawFrame, ...]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for frame in frames:
            pipe.xadd(settings.keys.raw(P), frame.to_fields())
        await pipe.execute()


async def expected_outputs(redis: Any, settings: Settings) -> tuple[list[Trade], list[Signal]]:
    """Run the pure core once over the whole raw stream, as the shell should have."""
    entries = decode_entries(await redis.xrange(settings.keys.raw(P)))
    state = PartitionState(str(P), "binance", build_strategies(settings))
    out = process_batch(state, entries, 0)
    return out.trades, out.signals


async def read_stream(redis: Any, key: str) -> list[dict[str, str]]:
    return [decode_fields(fields) for _, fields in await redis.xrange(key)]


def start(settings: Settings, redis: Any, **kw: Any) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, redis=redis, clock=lambda: 42, **kw))
    return task, stop


def processing(
    settings: Settings, redis: Any, **kw: Any
) -> contextlib.AbstractAsyncContextManager[asyncio.Task[Any]]:
    """Run a processor (its clock at 42) for the block, then stop it and await its exit."""
    return stage_running(run, settings, redis=redis, clock=lambda: 42, **kw)


def without_stamps(trades: list[Trade]) -> list[Trade]:
    return [dataclasses.replace(t, ts_proc=0) for t in trades]


async def assert_all_processed(redis: Any, settings: Settings) -> None:
    keys = settings.keys
    trades, signals = await expected_outputs(redis, settings)
    got = [Trade.from_fields(f) for f in await read_stream(redis, keys.trades(P))]
    assert without_stamps(got) == without_stamps(trades)  # no duplicate, no loss, same order
    assert [Signal.from_fields(f) for f in await read_stream(redis, keys.signals(P))] == [
        dataclasses.replace(s, ts_signal=42) for s in signals
    ]
    for interval in ("1s", "1m"):
        bars = await read_stream(redis, keys.bars(P, interval))
        finals = [(b["ts_open"], b["final"]) for b in bars if b["final"] == "1"]
        assert len(finals) == len(set(finals))
    pending = await redis.xpending(keys.raw(P), GROUP_PROCESSOR)
    assert pending["pending"] == 0


def test_processes_raw_into_outputs_acks_and_stops_cleanly() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings(batch_size=300)
        keys = settings.keys
        await write_raw(redis, settings, real_frames())
        await redis.xadd(keys.raw(P), RawFrame("ws", "binance", "c1", 1, 1, "garbage").to_fields())
        await redis.xadd(keys.raw(P), {"only": "junk"})
        report = REAL_REPORT.read_text()
        await redis.xadd(
            keys.private_raw("binance"),
            RawFrame("ws", "binance", "p1", 1, 5, report).to_fields(),
        )
        trades, _ = await expected_outputs(redis, settings)
        assert len(trades) > 400

        async with processing(settings, redis):

            async def done() -> bool:
                return await redis.xlen(keys.trades(P)) == len(trades) and bool(
                    await redis.xlen(keys.order_updates("binance"))
                )

            await until(done)

            async def healthy() -> bool:
                raw = await redis.get(keys.health("processor", "m1"))
                return bool(raw) and orjson.loads(raw)["frames"] == FRAMES + 3

            await until(healthy)
            health = orjson.loads(await redis.get(keys.health("processor", "m1")))
            assert health["status"] == "ok" and health["partitions_owned"] == 1
            assert health["owned"] == ["binance:0", "binance:private"]
            assert health["trades"] == len(trades) and health["dead_letters"] == 2
            assert await redis.get(keys.lease(P)) == b"m1"

        await assert_all_processed(redis, settings)
        letters = await read_stream(redis, keys.dead_letters(P))
        assert [set(d) for d in letters] == [{"reason", "entry_id", "data"}] * 2
        assert letters[0]["data"] == "garbage" and "not JSON" in letters[0]["reason"]
        assert "malformed" in letters[1]["reason"]
        (update,) = await read_stream(redis, keys.order_updates("binance"))
        assert OrderUpdate.from_fields(update).client_order_id == "T0ESHzso0banw0QiPFZYgj"
        assert await redis.get(keys.checkpoint(P)) is not None
        assert await redis.get(keys.venue_checkpoint("binance")) is not None
        # Clean stop: leases released, health key removed.
        assert await redis.get(keys.lease(P)) is None
        assert await redis.get(private_lease_key(settings, "binance")) is None
        assert await redis.get(keys.health("processor", "m1")) is None

    asyncio.run(scenario())


def test_pending_entries_of_a_dead_consumer_are_claimed_and_processed() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        keys = settings.keys
        await write_raw(redis, settings, real_frames()[:600])
        await redis.xgroup_create(keys.raw(P), GROUP_PROCESSOR, id="0")
        # A member that read 100 entries and died before processing them.
        await redis.xreadgroup(GROUP_PROCESSOR, "ghost", {keys.raw(P): ">"}, count=100)
        async with processing(settings, redis):
            trades, _ = await expected_outputs(redis, settings)

            await until(lambda: xlen_at_least(redis, keys.trades(P), len(trades)))
        await assert_all_processed(redis, settings)

    asyncio.run(scenario())


def _kill_and_restart(second_instance: str) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings(batch_size=20)
        keys = settings.keys
        await write_raw(redis, settings, real_frames())
        trades, _ = await expected_outputs(redis, settings)

        task, _ = start(settings, redis, lease_ms=400)

        async def some() -> bool:
            return await redis.xlen(keys.trades(P)) > 0

        await until(some)
        task.cancel()  # a crash: no lease release, no final batch
        await asyncio.gather(task, return_exceptions=True)
        assert 0 < await redis.xlen(keys.trades(P)) < len(trades)

        second = dataclasses.replace(settings, instance=second_instance)
        async with processing(second, redis, lease_ms=400):
            await until(lambda: xlen_at_least(redis, keys.trades(P), len(trades)))
        await assert_all_processed(redis, settings)

    asyncio.run(scenario())


def test_killed_member_restarted_under_its_name_resumes_without_duplicates() -> None:
    _kill_and_restart("m1")


def test_another_member_takes_over_a_killed_one_without_duplicates() -> None:
    _kill_and_restart("m2")


def test_a_second_member_stands_by_then_takes_over() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        first, second = make_settings("m1"), make_settings("m2")
        keys = first.keys
        frames = real_frames()
        await write_raw(redis, first, frames[:800])
        task1, stop1 = start(first, redis, lease_ms=600)

        async def owned_by_m1() -> bool:
            return await redis.get(keys.lease(P)) == b"m1"

        await until(owned_by_m1)
        task2, stop2 = start(second, redis, lease_ms=600)

        async def m2_reports_standby() -> bool:
            raw = await redis.get(keys.health("processor", "m2"))
            return bool(raw) and orjson.loads(raw)["partitions_owned"] == 0

        await until(m2_reports_standby)
        trades, _ = await expected_outputs(redis, first)

        async def all_done() -> bool:
            return await redis.xlen(keys.trades(P)) >= len(trades)

        await until(all_done)
        assert await redis.get(keys.lease(P)) == b"m1"
        m2 = orjson.loads(await redis.get(keys.health("processor", "m2")))
        assert (m2["partitions_owned"], m2["frames"]) == (0, 0)

        stop1.set()
        await asyncio.wait_for(task1, 5)
        await write_raw(redis, first, frames[800:])

        async def owned_by_m2() -> bool:
            return await redis.get(keys.lease(P)) == b"m2"

        await until(owned_by_m2)
        trades, _ = await expected_outputs(redis, first)
        await until(all_done)
        stop2.set()
        await asyncio.wait_for(task2, 5)
        await assert_all_processed(redis, first)

    asyncio.run(scenario())


FLAKY_PLUGIN = '''
from typing import ClassVar

from tickpipe.processor.strategies import QUOTES, TRADES, SignalSpec, Strategy


class Flaky(Strategy):
    """Signal on every quote; raise on every trade."""

    name: ClassVar[str] = "flaky"
    inputs: ClassVar[frozenset[str]] = frozenset({QUOTES, TRADES})

    def on_quote(self, quote, ts_now):
        return [SignalSpec(quote.symbol, "buy", "1", quote.ask_price, "quote")]

    def on_trade(self, trade, ts_now):
        raise RuntimeError(f"no trades please ({trade.trade_id})")

    def to_state(self):
        return None

    def load_state(self, data):
        return None
'''


def test_a_plugin_by_path_runs_in_the_shell_and_its_failures_show_in_health(
    tmp_path: Path, monkeypatch: Any, caplog: Any
) -> None:
    (tmp_path / "flaky_plugin.py").write_text(FLAKY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = dataclasses.replace(
            make_settings(batch_size=200),
            strategies=("threshold_cross", "flaky_plugin:Flaky"),
            strategy_max_failures=4,
        )
        keys = settings.keys
        await write_raw(redis, settings, real_frames())
        _, expected = await expected_outputs(redis, settings)
        assert any(s.strategy == "flaky" for s in expected)
        async with processing(settings, redis):

            async def healthy() -> bool:
                raw = await redis.get(keys.health("processor", "m1"))
                return bool(raw) and orjson.loads(raw)["frames"] == FRAMES

            await until(healthy)
            health = orjson.loads(await redis.get(keys.health("processor", "m1")))
            assert (health["strategy_errors"], health["strategies_disabled"]) == (4, 1)
        await assert_all_processed(redis, settings)
        logged = [r.getMessage() for r in caplog.records if "strategy flaky raised" in r.message]
        assert len(logged) == 4 and "disabled after 4 failures" in logged[-1]

    asyncio.run(scenario())
