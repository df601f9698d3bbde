"""``tickpipe replay`` of a real recording still processes cleanly under the event-time bounds.

The recording is two years old; ``replay_file`` writes each frame with its recorded receive time,
so the venue's times stay within the bounds of their receive times and nothing is dead-lettered
for its time. (REST depth snapshots of the recording are not trades: they carry no time.)
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import fakeredis

from tests.realdata import BTCUSDT_CAPTURE
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.processor.core import BadEntry, PartitionState, process_batch
from tickpipe.processor.lanes import decode_entries
from tickpipe.tools.ops import read_recording, replay_file

SETTINGS = Settings(namespace="rp", symbols=("BTCUSDT",), instance="t")


def test_a_replayed_recording_gives_every_trade_and_no_time_dead_letter() -> None:
    frames = [f for f in list(read_recording(BTCUSDT_CAPTURE))[:4000] if '"stream"' in f[1]]
    trades_sent = sum(1 for f in frames if '@trade"' in f[1])

    async def go() -> list[tuple[str, RawFrame | BadEntry]]:
        redis = fakeredis.FakeAsyncRedis()
        await replay_file(redis, SETTINGS, iter(frames), conn="rep", out=io.StringIO())
        part = Partition("binance", shard_for("BTCUSDT", 1))
        stored: Any = await redis.xrange(SETTINGS.keys.raw(part))
        return decode_entries(stored)

    entries = asyncio.run(go())
    state = PartitionState.from_settings(SETTINGS, "binance:0", "binance")
    out = process_batch(state, entries, 1)
    assert trades_sent > 500 and len(out.trades) == trades_sent
    assert [d.reason for d in out.dead_letters] == []
    assert state.counters["implausible"] == 0
    assert sum(1 for b in out.bars if b.final) > 10
