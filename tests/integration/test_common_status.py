"""`tickpipe streams` and the status block read streams, groups and health from Redis."""

from __future__ import annotations

import asyncio

import fakeredis

from tickpipe.common.health import HealthReporter
from tickpipe.common.names import Partition
from tickpipe.common.settings import load_settings
from tickpipe.common.status import read_status, render_status, render_streams


def test_status_shows_streams_groups_lag_and_health() -> None:
    async def main() -> tuple[list[str], list[str]]:
        redis = fakeredis.FakeAsyncRedis()
        settings = load_settings({"TICKPIPE_NAMESPACE": "st"}, dotenv_path=None)
        keys, p = settings.keys, Partition("binance", 0)
        for i in range(5):
            await redis.xadd(keys.raw(p), {"n": str(i)})
        await redis.xgroup_create(keys.raw(p), "processor", id="0")
        await redis.xreadgroup("processor", "c1", {keys.raw(p): ">"}, count=2)
        await redis.xadd(keys.trades(p), {"price": "1"})
        await redis.xadd("other:{x}:raw", {"n": "1"})  # another namespace: not shown
        reporter = HealthReporter(redis, keys, "ingestor", "i1", stats=lambda: {"frames": 5})
        reporter.status = "ok"
        await reporter.publish()
        snapshot = await read_status(redis, settings)
        return render_streams(snapshot.streams), render_status(snapshot)

    streams, status = asyncio.run(main())
    raw_row = next(r for r in streams if r.startswith("st:{binance:0}:raw"))
    assert raw_row.split()[1:5] == ["5", "processor", "2", "3"]  # length, group, pending, lag
    assert not any("other:" in r for r in streams)
    assert "raw=5" in status[0] and "trades=1" in status[0] and "pending=2" in status[0]
    assert "ingestor[i1]" in status[1] and "ok" in status[1] and "frames=5" in status[1]
