"""The peer benchmark tells its own client's connection from an earlier run's reconnection."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from bench.peer import Feed, cpu_seconds
from bench.rig import Rig


def _write(path: Path, *events: dict[str, object]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_a_run_takes_the_first_connection_after_it_started_with_its_streams(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    trade, agg = "/stream?streams=btcusdt@trade", "/stream?streams=btcusdt@aggTrade"
    _write(
        events,
        {"ev": "connected", "ts": 100, "conn": 1, "path": trade},  # before the run started
        {"ev": "connected", "ts": 250, "conn": 2, "path": agg},  # another side's streams
        {"ev": "first_frame", "ts": 260, "conn": 2},
        {"ev": "connected", "ts": 300, "conn": 3, "path": trade},  # this run's client
        {"ev": "connected", "ts": 400, "conn": 4, "path": trade},  # it reconnecting later
    )
    feed = Feed(Rig(tmp_path), 0, events, 10)
    assert asyncio.run(feed.connected({}, 200, "@trade")) == 3
    assert asyncio.run(feed.connected({}, 200, "@aggTrade")) == 2
    assert feed.first_frame(2) == 260


def test_cpu_seconds_of_this_process_grow_with_work() -> None:
    before = cpu_seconds(os.getpid())
    total = 0
    while cpu_seconds(os.getpid()) - before < 0.02:  # a few clock ticks of work
        total += sum(range(10_000))
    assert total > 0
    assert cpu_seconds(2**22 + 12345) == 0.0  # no such process
