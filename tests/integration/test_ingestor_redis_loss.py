"""Integration test: trades Redis lost after acknowledging them are found and fetched again.

fakeredis stands in for a Redis that comes back from an outage without the tail of what it had
acknowledged (an AOF not yet on disk, a failover to a lagging replica); the in-process mock
exchange serves the lost trades over REST. The real redis-server version, with an AOF cut, is
in ``tests/e2e/test_ingestor_faults.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import fakeredis

from tests.integration.ingestor_support import entries, running
from tests.integration.test_ingestor_mock_faults import RAW, events, settings_for, trade_ids
from tests.rawread import frames_of, rawframes
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.shell import Ingestor
from tickpipe.mock_ws import read_ground_truth, start_mock


def live_trades(frames: list[RawFrame]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for f in frames:
        data = json.loads(f.data).get("data", {}) if f.kind == "ws" else {}
        if data.get("e") == "trade":
            out[data["s"]].append(data["t"])
    return out


def test_trades_redis_lost_in_an_outage_are_marked_and_backfilled(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[list[RawFrame], dict[str, list[int]], int, Ingestor]:
        mock = await start_mock(binance_port=0, trades_per_s=50, ground_truth_path=str(truth_file))
        async with mock:
            server = fakeredis.FakeServer()
            redis = fakeredis.FakeAsyncRedis(server=server)
            ingestor = Ingestor(
                settings_for(mock), redis=redis,
                backoff_factory=lambda: Backoff(base_s=0.01, cap_s=0.05),
            )  # fmt: skip
            async with running(ingestor):
                await until(lambda: ingestor.stats.entries_written >= 80, 10)
                server.connected = False
                await until(lambda: not ingestor.stats.redis_up)
                # Redis comes back without the last 30 frames it had acknowledged (and the
                # rest of the packed entry the 30th is in: an entry goes whole).
                sync = fakeredis.FakeRedis(server=server)
                server.connected = True
                cut: list[tuple[Any, Any]] = []
                for entry in sync.xrevrange(RAW, count=30):
                    if len(frames_of(cut)) >= 30:
                        break
                    cut.append(entry)
                sync.xdel(RAW, *[entry_id for entry_id, _ in cut])
                cut_frames = rawframes(cut)
                assert len(cut_frames) >= 30
                lost = live_trades(cut_frames)
                await until(lambda: ingestor.stats.redis_up)
                await until(lambda: ingestor.stats.backfills_complete >= len(lost), 10)
                after = ingestor.stats.frames_received + 40
                await until(lambda: ingestor.stats.frames_received >= after, 10)
            return await entries(redis, RAW), lost, len(cut_frames), ingestor

    got, lost, cut, ingestor = asyncio.run(scenario())
    assert lost and all(lost.values()), "the cut held no trade: nothing was tested"
    truth = read_ground_truth(truth_file).trades_sent()
    for symbol, lost_ids in lost.items():
        ids = trade_ids(got, symbol)
        sent = {t["trade_id"] for t in truth if t["symbol"] == symbol}
        span = set(range(min(ids), max(ids) + 1))
        assert span <= set(ids), f"{symbol}: trades missing from raw"
        assert sent & span == span, f"{symbol}: raw holds ids the venue never sent"
        assert set(lost_ids) <= set(ids) - set(live_trades(got)[symbol])  # back from REST
        gaps = [g for g in events(got, "gap") if g["symbol"] == symbol]
        assert [(g["first_id"], g["last_id"], g["reason"]) for g in gaps] == [
            (min(lost_ids), max(lost_ids), "lost by Redis")
        ]
        done = [d for d in events(got, "backfill_done") if d["symbol"] == symbol]
        assert [(d["first_id"], d["last_id"], d["outcome"]) for d in done] == [
            (min(lost_ids), max(lost_ids), "complete")
        ]
    summary = events(got, "redis_lost")
    assert len(summary) == 1 and summary[0]["frames"] == cut and not summary[0]["whole"]
    health: dict[str, Any] = ingestor.health_stats()
    assert health["redis_losses"] == 1 and health["frames_lost_by_redis"] == cut
