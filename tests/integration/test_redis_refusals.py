"""Redis refusing commands (OOM at maxmemory, BUSY, READONLY...) is back-pressure in every stage.

A fakeredis server is made to refuse commands as a real one does (:mod:`tests.integration.
refusals`). Each stage keeps running, logs the server's own text once (not once per retry),
names the condition in its health record, loses nothing and does nothing twice; its health key
comes back as soon as Redis takes writes again, and a stop returns cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from dash.exceptions import PreventUpdate

from tests.integration.refusals import OOM_REPLY, Refusals, refusing_redis
from tests.integration.test_processor_shell import (
    assert_all_processed,
    expected_outputs,
    real_frames,
    start,
    write_raw,
)
from tests.integration.test_processor_shell import make_settings as processor_settings
from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    make_signal,
    pending,
    signal_stream,
)
from tests.rawread import raw_len, rawframes
from tests.waits import until, xlen_at_least
from tickpipe.common.backpressure import RedisFigures
from tickpipe.common.health import HealthReporter
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.dashboard.shell import DashboardServer
from tickpipe.dashboard.shell import run as dashboard_run
from tickpipe.ingestor.writer import BatchWriter, IngestorStats, WriteQueue

KEYS = Keys("rr")
P = Partition("binance", 0)
OOM_TEXT = "OOM command not allowed when used memory > 'maxmemory'."
OTHER_REFUSALS = [
    ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL.", None),
    ("READONLY You can't write against a read only replica.", frozenset({"set", "del"})),
    ("MISCONF Errors writing to the AOF file: No space left on device", frozenset({"set"})),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", None),
]


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def _record(redis: Any, key: str) -> dict[str, Any]:
    raw = await redis.get(key)
    return orjson.loads(raw) if raw else {}


@pytest.mark.parametrize(("reply", "commands"), [(OOM_REPLY, frozenset({"set"})), *OTHER_REFUSALS])
def test_health_reporter_outlives_a_refusal_and_writes_its_key_again(
    reply: str, commands: frozenset[str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        redis, refusals = refusing_redis(reply, commands=commands)
        figures = RedisFigures()
        reporter = HealthReporter(
            redis, KEYS, "stage", "one", interval_s=0.01, figures=figures, metrics_port=0
        )
        reporter.status = "ok"
        key = KEYS.health("stage", "one")
        stop = asyncio.Event()
        task = asyncio.create_task(reporter.run(stop))
        await until(lambda: redis.exists(key))
        refusals.on = True
        await until(lambda: _refused_at_least(refusals, 20))  # many retries...
        assert not task.done()  # ... and the reporter is still there
        code = reply.split(" ")[0]
        assert figures.snapshot()["redis_condition"] == code
        refusals.on = False
        back_ns = time.time_ns()
        await until(lambda: _written_after(redis, key, back_ns))  # at the next intervals
        record = await _record(redis, key)
        assert record["status"] == "ok" and record["redis_retries"][code] >= 20
        stop.set()
        await asyncio.wait_for(task, 5)  # a clean stop, no exception
        assert not await redis.exists(key)

    with caplog.at_level(logging.WARNING, logger="tickpipe.health"):
        asyncio.run(scenario())
    assert len(_lines(caplog, reply)) == 1  # the server's own text, once for many retries
    assert len(_lines(caplog, "takes commands again")) == 1


async def _written_after(redis: Any, key: str, ns: int) -> bool:
    """Whether the record was written after ``ns`` and names no condition any more."""
    record = await _record(redis, key)
    return record.get("updated_ns", 0) > ns and record.get("redis_condition") == ""


async def _refused_at_least(refusals: Refusals, n: int) -> bool:
    return sum(refusals.refused.values()) >= n


def _frame(seq: int) -> RawFrame:
    return RawFrame("ws", "binance", "c1", seq, 1_000 + seq, f'{{"n":{seq}}}')


def test_ingestor_writer_keeps_frames_through_oom_and_quotes_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = KEYS.raw(P)

    async def scenario() -> tuple[list[int], IngestorStats]:
        redis, refusals = refusing_redis()
        queue: WriteQueue = asyncio.Queue(maxsize=1000)
        stats = IngestorStats()
        writer = BatchWriter(redis, queue, stats)
        writer.backoff.base_s = writer.backoff.cap_s = 0.01
        task = asyncio.create_task(writer.run())
        await queue.put((stream, _frame(1)))
        await until(lambda: xlen_at_least(redis, stream, 1))
        refusals.on = True
        for seq in range(2, 40):
            await queue.put((stream, _frame(seq)))
        await until(lambda: _refused_at_least(refusals, 10))
        assert stats.redis_up is False and OOM_TEXT in stats.last_error
        assert await raw_len(redis, stream) == 1  # refused: nothing written twice meanwhile
        refusals.on = False
        await until(lambda: xlen_at_least(redis, stream, 39))
        await queue.put(None)
        await asyncio.wait_for(task, 5)
        seqs = [f.seq for f in rawframes(await redis.xrange(stream))]
        return seqs, stats

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        seqs, stats = asyncio.run(scenario())
    assert seqs == list(range(1, 40))  # every frame once, in order
    assert stats.redis_up and stats.redis_outages == 1
    assert len(_lines(caplog, OOM_TEXT)) == 1
    assert _lines(caplog, "server:ResponseError") == []


def test_processor_waits_out_oom_acks_nothing_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        redis, refusals = refusing_redis()
        settings = processor_settings(batch_size=50)
        keys = settings.keys
        frames = real_frames()
        half = len(frames) // 2
        await write_raw(redis, settings, frames[:half])
        task, stop = start(settings, redis, direct=False)
        health = keys.health("processor", "m1")
        await until(lambda: xlen_at_least(redis, keys.trades(P), 1))
        refusals.on = True
        await write_raw_unrefused(refusals, redis, settings, frames[half:])
        await until(lambda: _refused_at_least(refusals, 30))
        acked = await _acked(redis, keys.raw(P))
        await until(lambda: _refused_at_least(refusals, 60))
        assert await _acked(redis, keys.raw(P)) == acked  # no ack while the outputs are refused
        assert not task.done()
        await until(lambda: _missing(redis, health))  # its TTL ran out meanwhile
        refusals.on = False
        trades, _ = await expected_outputs(redis, settings)
        await until(lambda: xlen_at_least(redis, keys.trades(P), len(trades)))
        await until(lambda: redis.exists(health))  # back without a restart
        record = await _record(redis, health)
        assert record["status"] == "ok" and record["redis_retries"]["OOM"] >= 60
        stop.set()
        await asyncio.wait_for(task, 5)  # a stop after the outage is clean
        await assert_all_processed(redis, settings)

    with caplog.at_level(logging.WARNING, logger="tickpipe"):
        asyncio.run(scenario())
    quoted = _lines(caplog, OOM_TEXT)
    assert quoted and len(quoted) <= 4  # one per loop (lanes, health), not one per retry


async def write_raw_unrefused(
    refusals: Refusals, redis: Any, settings: Any, frames: tuple[RawFrame, ...]
) -> None:
    """Append raw frames while the server refuses everyone else (the ingestor's are in)."""
    refusals.on = False
    await write_raw(redis, settings, frames)
    refusals.on = True


async def _acked(redis: Any, stream: str) -> int:
    groups = await redis.xinfo_groups(stream)
    group = groups[0]
    return int(group.get("entries-read") or 0) - int(group["pending"])


async def _missing(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


def test_trader_sends_nothing_whose_intent_redis_refused_then_exactly_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        redis, refusals = refusing_redis()
        venue = FakeVenue()
        h = Harness(venue, redis=redis)
        h.start()
        health = h.settings.keys.health("trader", h.settings.instance)
        await until(lambda: redis.exists(health))
        signal = make_signal(7)
        refusals.on = True
        refusals.on = False
        await h.add_signal(signal)  # written before the refusal starts...
        refusals.on = True  # ... and read while Redis refuses the intent
        await until(lambda: _refused_at_least(refusals, 30))
        assert venue.place_calls == []  # no order without its recorded intent
        assert h.task is not None and not h.task.done()
        assert await pending(redis, signal_stream(h.settings)) == 1
        refusals.on = False
        await until(lambda: _acked_signal(h))
        await until(lambda: _trader_ok(redis, health))
        await h.finish()  # a clean stop after the outage
        cid = client_order_id_for(signal.signal_id)
        assert [p["newClientOrderId"] for p in venue.place_calls] == [cid]
        assert [e["event"] for e in await h.events()] == ["intent", "ack"]

    with caplog.at_level(logging.WARNING, logger="tickpipe"):
        asyncio.run(scenario())
    assert _lines(caplog, OOM_TEXT)


async def _acked_signal(h: Harness) -> bool:
    return await h.has_event("ack") and await h.signals_read()


async def _trader_ok(redis: Any, key: str) -> bool:
    record = await _record(redis, key)
    return record.get("status") == "ok" and record.get("redis_condition") == ""


def test_dashboard_skips_updates_and_keeps_its_health_through_busy() -> None:
    settings = Settings(namespace="rr", symbols=("BTCUSDT",), instance="d1", health_interval_s=0.05)
    busy = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL."

    async def scenario() -> None:
        redis, refusals = refusing_redis(busy, commands=None)
        health = settings.keys.health("dashboard", "d1")
        stop = asyncio.Event()
        ready: list[DashboardServer] = []
        task = asyncio.create_task(
            dashboard_run(settings, stop, redis=redis, port=0, on_ready=ready.append)
        )
        await until(lambda: _dashboard_up(ready, redis, health))
        server = ready[0]

        def read_streams() -> object:
            return server.call(lambda r: r.xlen(settings.keys.trades(P)))

        refusals.on = True
        with pytest.raises(PreventUpdate):  # this update is skipped, the page stays up
            await asyncio.to_thread(read_streams)
        assert server.read_errors == 1
        await until(lambda: _refused_at_least(refusals, 10))
        assert not task.done()
        refusals.on = False
        assert await asyncio.to_thread(read_streams) == 0
        back_ns = time.time_ns()
        await until(lambda: _written_after(redis, health, back_ns))
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


async def _dashboard_up(ready: list[Any], redis: Any, key: str) -> bool:
    return bool(ready) and bool(await redis.exists(key))


def test_trader_waits_while_its_term_cannot_start_then_trades(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = "MISCONF Errors writing to the AOF file: No space left on device"

    async def scenario() -> None:
        redis, refusals = refusing_redis(reply, commands=frozenset({"xgroup"}))
        refusals.on = True  # the lease is taken, the consumer groups cannot be made
        venue = FakeVenue()
        h = Harness(venue, redis=redis)
        signal = make_signal(3)
        await h.add_signal(signal)
        h.start()
        await until(lambda: _refused_at_least(refusals, 3))
        assert h.task is not None and not h.task.done() and venue.place_calls == []
        refusals.on = False
        await until(lambda: _acked_signal(h))
        await until(lambda: _trader_ok(redis, h.settings.keys.health("trader", "trader-test")))
        await h.finish()
        assert [p["newClientOrderId"] for p in venue.place_calls] == [
            client_order_id_for(signal.signal_id)
        ]

    with caplog.at_level(logging.WARNING, logger="tickpipe.trader"):
        asyncio.run(scenario())
    starting = _lines(caplog, "trader starting a term")
    assert len(starting) == 2  # one warning quoting the server, one when it is over
    assert reply in starting[0] and "takes commands again" in starting[1]
