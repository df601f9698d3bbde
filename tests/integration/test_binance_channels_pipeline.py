"""New Binance channels from the mock through the ingestor and the processor, read back by range.

The ingestor subscribes partial depth, UTC+8 klines, a rolling-window ticker, the mini ticker
and the average price on the in-process mock; the processor normalises its raw stream on the
same fakeredis. Once the processor has read every raw entry, each frame of those channels must
be exactly one entry of its stream, with the frame's values, and the DataFrame readers must
return the entries of a time range and no others.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import fakeredis
import orjson

from tests.integration.ingestor_support import running
from tests.rawread import rawframes
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.names import Partition
from tickpipe.common.schema import RawFrame, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.ingestor.shell import Ingestor
from tickpipe.mock_ws import start_mock
from tickpipe.processor.shell import run as run_processor
from tickpipe.tools import frames

SEED = 7
P = Partition("binance", 0)
CHANNELS = ("trade", "depth5@100ms", "kline_1m@+08:00", "ticker_1h", "miniTicker", "avgPrice")
#: Channel -> the stream its frames are normalised into.
OUTPUT = {"depth5@100ms": "partial-depth", "kline_1m@+08:00": "venue-bars", "ticker_1h": "tickers",
          "miniTicker": "tickers", "avgPrice": "tickers"}  # fmt: skip


def _settings(mock: Any) -> Settings:
    return Settings(
        namespace="bch", symbols=("BTCUSDT",), shards=1, binance_ws_url=mock.ws_url,
        binance_ws_api_url=mock.ws_api_url, binance_rest_url=mock.rest_url, instance="bch-1",
        health_interval_s=0.1,
        ingestor_journal_max_mb=0, channels=CHANNELS,
    )  # fmt: skip


async def _stream(redis: Any, key: str) -> list[tuple[str, dict[str, str]]]:
    return [(i.decode(), decode_fields(f)) for i, f in await redis.xrange(key)]


def _channel_of(frame: RawFrame) -> str | None:
    if frame.kind != "ws" or not frame.data.startswith('{"stream":'):
        return None
    return str(orjson.loads(frame.data)["stream"]).partition("@")[2]


def test_new_channels_flow_from_the_mock_into_their_streams_once_each() -> None:
    print(f"mock seed {SEED}")

    async def scenario() -> tuple[Settings, Any]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(binance_port=0, seed=SEED, symbols=("BTCUSDT",), trades_per_s=40)
        try:
            settings = _settings(mock)
            keys = settings.keys

            async def every_channel_seen() -> bool:
                raws = rawframes(await redis.xrange(keys.raw(P)))
                seen = Counter(_channel_of(r) for r in raws)
                return all(seen[c] >= 2 for c in OUTPUT)

            async with stage_running(run_processor, settings, redis=redis):
                async with running(Ingestor(settings, redis=redis)):
                    await until(every_channel_seen, 30, "two frames of every channel in raw")

                async def all_processed() -> bool:
                    last = await redis.xrevrange(keys.raw(P), count=1)
                    pending = await redis.xpending(keys.raw(P), "processor")
                    groups = await redis.xinfo_groups(keys.raw(P))
                    done = groups and groups[0]["last-delivered-id"] == last[0][0]
                    return bool(done) and pending["pending"] == 0

                await until(all_processed, 30, "the processor to read every raw entry")
        finally:
            await mock.close()
        return settings, redis

    settings, redis = asyncio.run(scenario())
    keys = settings.keys

    async def collect() -> tuple[list[RawFrame], dict[str, list[dict[str, str]]]]:
        raws = rawframes(await redis.xrange(keys.raw(P)))
        out = {
            "partial-depth": [f for _, f in await _stream(redis, keys.partial_depth(P))],
            "venue-bars": [f for _, f in await _stream(redis, keys.venue_bars(P))],
            "tickers": [f for _, f in await _stream(redis, keys.tickers(P))],
        }
        dead = await _stream(redis, keys.dead_letters(P))
        assert dead == [], dead
        # Partial depth is whole in every message: no REST snapshot asked, no book built from it.
        assert [r.channel for r in raws if "depth_snapshot" in (r.channel, r.data)] == []
        assert await redis.xlen(keys.book(P)) == 0
        return raws, out

    raws, out = asyncio.run(collect())
    frames_of: dict[str, list[dict[str, Any]]] = {c: [] for c in OUTPUT}
    for raw in raws:
        channel = _channel_of(raw)
        if channel in frames_of:
            frames_of[channel].append(orjson.loads(raw.data)["data"])
    depth = frames_of["depth5@100ms"]
    assert [(r["update_id"], r["depth"], r["update_ms"]) for r in out["partial-depth"]] == [
        (str(d["lastUpdateId"]), "5", "100") for d in depth
    ]
    assert [r["bids"] for r in out["partial-depth"]] == [
        ",".join(f"{p}:{q}" for p, q in d["bids"]) for d in depth
    ]
    klines = frames_of["kline_1m@+08:00"]
    bars = out["venue-bars"]
    assert [(b["interval"], b["ts_open"], b["close"], b["final"]) for b in bars] == [
        ("1m@+08:00", str(k["k"]["t"] * 1_000_000), k["k"]["c"], "1" if k["k"]["x"] else "0")
        for k in klines
    ]
    for channel in ("ticker_1h", "miniTicker", "avgPrice"):
        rows = [r for r in out["tickers"] if r["channel"] == channel]
        sent = frames_of[channel]
        key = "w" if channel == "avgPrice" else "c"
        field = "weighted_avg" if channel == "avgPrice" else "last"
        assert [(r[field], r["ts_event"]) for r in rows] == [
            (d[key], str(d["E"] * 1_000_000)) for d in sent
        ], channel
    assert len(out["tickers"]) == sum(len(frames_of[c]) for c in OUTPUT if OUTPUT[c] == "tickers")

    # The readers return one range and nothing else: the middle partial-depth entries.
    rows = out["partial-depth"]
    times = sorted(int(r["ts_event"]) for r in rows)
    start, end = times[1], times[-1]
    inside = [r for r in rows if start <= int(r["ts_event"]) < end]

    async def read() -> tuple[Any, Any]:
        depth_frame = await frames.read_partial_depth(redis, settings, "BTCUSDT", start, end)
        bar_frame = await frames.read_venue_bars(redis, settings, "BTCUSDT",
                                                 interval="1m@+08:00")  # fmt: skip
        return depth_frame, bar_frame

    depth_frame, bar_frame = asyncio.run(read())
    assert list(depth_frame["update_id"]) == [r["update_id"] for r in inside]
    assert list(depth_frame["depth"]) == [5] * len(inside)
    latest: dict[str, dict[str, str]] = {}
    for bar in bars:
        latest[bar["ts_open"]] = bar  # stream order: the last push of a candle is its latest
    assert list(bar_frame["close"]) == [float(latest[t]["close"]) for t in sorted(latest)]
    assert list(bar_frame["revision"]) == [int(latest[t]["revision"]) for t in sorted(latest)]
