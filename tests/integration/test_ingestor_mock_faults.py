"""Integration tests of the ingestor against the in-process mock exchange's fault plan."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from tests.integration.ingestor_support import entries, running
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.ingestor.connection import WsOptions
from tickpipe.ingestor.shell import Ingestor
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock

RAW = "itf:{binance:0}:raw"


def settings_for(mock: MockExchange, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "namespace": "itf",
        "symbols": ("BTCUSDT", "ETHUSDT"),
        "binance_ws_url": mock.ws_url,
        "binance_ws_api_url": mock.ws_api_url,
        "binance_rest_url": mock.rest_url,
        "instance": "faults",
        "health_interval_s": 0.1,
        "ingestor_journal_max_mb": 0,
        "channels": ("trade",),
    }
    values.update(extra)
    return Settings(**values)


def ingestor_for(settings: Settings, **kw: Any) -> Ingestor:
    return Ingestor(
        settings,
        redis=fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()),
        backoff_factory=lambda: Backoff(base_s=0.01, cap_s=0.05),
        **kw,
    )


@contextlib.asynccontextmanager
async def ingesting(
    options: WsOptions | None = None, **mock_kw: Any
) -> AsyncIterator[tuple[MockExchange, Ingestor]]:
    """Run an ingestor against a mock trading 50 a second until the block ends."""
    mock = await start_mock(binance_port=0, trades_per_s=50, **mock_kw)
    async with mock:
        extra = {"symbols": mock_kw["symbols"]} if "symbols" in mock_kw else {}
        ingestor = ingestor_for(settings_for(mock, **extra), options=options)
        async with running(ingestor):
            yield mock, ingestor


def events(got: list[RawFrame], event: str) -> list[dict[str, Any]]:
    out = [json.loads(f.data) for f in got if f.kind == "marker"]
    return [m for m in out if m["event"] == event]


def backfilled(ingestor: Ingestor, symbol: str) -> Callable[[], Awaitable[bool]]:
    """A condition for ``until``: a backfill of ``symbol`` has finished (its marker is written)."""

    async def done() -> bool:
        markers = events(await entries(ingestor.redis, RAW), "backfill_done")
        return any(m["symbol"] == symbol for m in markers)

    return done


def trade_ids(got: list[RawFrame], symbol: str) -> list[int]:
    ids = []
    for f in got:
        if f.kind == "ws":
            data = json.loads(f.data).get("data", {})
            if data.get("e") == "trade" and data["s"] == symbol:
                ids.append(data["t"])
        elif f.kind == "rest" and f.channel == "trades_backfill":
            body = json.loads(f.data)
            if body["symbol"] == symbol:
                ids.extend(t["id"] for t in body["response"])
    return ids


def test_server_shutdown_rotates_without_losing_a_trade() -> None:
    async def scenario() -> list[RawFrame]:
        async with ingesting() as (mock, ingestor):
            await until(lambda: ingestor.stats.frames_received >= 20)
            await mock.inject({"type": "server_shutdown", "kind": "stream", "grace": 1.0})
            await until(lambda: ingestor.stats.rotations == 1)
            after = ingestor.stats.frames_received + 20
            await until(lambda: ingestor.stats.frames_received >= after)
        assert ingestor.stats.trade_gaps == 0
        return await entries(ingestor.redis, RAW)

    got = asyncio.run(scenario())
    rotate = events(got, "rotate")
    assert len(rotate) == 1 and rotate[0]["reason"] == "serverShutdown"
    for symbol in ("BTCUSDT", "ETHUSDT"):
        ids = sorted(set(trade_ids(got, symbol)))
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: a hole"


def test_a_trade_gap_is_backfilled_from_the_mock_rest_api() -> None:
    async def scenario() -> list[RawFrame]:
        async with ingesting() as (mock, ingestor):
            await until(lambda: ingestor.stats.frames_received >= 10)
            await mock.inject({"type": "trade_gap", "symbol": "ETHUSDT", "count": 4})
            await until(lambda: ingestor.stats.rest_backfilled >= 4)
        return await entries(ingestor.redis, RAW)

    got = asyncio.run(scenario())
    ids = trade_ids(got, "ETHUSDT")
    assert len(ids) == len(set(ids))
    assert sorted(ids) == list(range(min(ids), max(ids) + 1))
    gap = events(got, "gap")
    assert gap and gap[0]["last_id"] - gap[0]["first_id"] == 3


def test_a_stalled_mock_connection_is_replaced() -> None:
    async def scenario() -> Ingestor:
        options = WsOptions(stale_floor_s=0.5, stale_max_s=10.0)
        async with ingesting(options) as (mock, ingestor):
            await until(lambda: ingestor.stats.frames_received >= 50)
            await mock.inject({"type": "stall", "kind": "stream", "duration": 1.5})
            await until(lambda: ingestor.stats.stale_detected >= 1)
            await until(lambda: ingestor.stats.reconnects >= 1)
        return ingestor

    ingestor = asyncio.run(scenario())
    assert ingestor.stats.stale_detected >= 1


@pytest.mark.parametrize("style", ["spaced", "pretty", "reordered"])
def test_frames_a_proxy_re_encodes_still_feed_gap_detection_and_liveness(style: str) -> None:
    """``{"stream": "`` with a space (or indented, or keys reordered) is still a data frame."""

    async def scenario() -> list[RawFrame]:
        options = WsOptions(stale_floor_s=0.5, stale_max_s=60.0)
        faults = [{"type": "reformat", "style": style}]
        async with ingesting(options, faults=faults) as (mock, ingestor):
            await until(lambda: ingestor.stats.frames_received >= 20)
            await mock.inject({"type": "trade_gap", "symbol": "ETHUSDT", "count": 4})
            await until(lambda: ingestor.stats.rest_backfilled >= 4, 10)
            await mock.inject({"type": "stall", "kind": "stream", "duration": 3})
            await until(lambda: ingestor.stats.stale_detected >= 1, 10)
        return await entries(ingestor.redis, RAW)

    got = asyncio.run(scenario())
    trades = [f for f in got if f.kind == "ws" and '"trade"' in f.data]
    assert trades and not any(f.data.startswith('{"stream":"') for f in trades)  # re-encoded
    ids = trade_ids(got, "ETHUSDT")
    assert sorted(set(ids)) == list(range(min(ids), max(ids) + 1))
    gap = events(got, "gap")
    assert len(gap) == 1 and gap[0]["last_id"] - gap[0]["first_id"] == 3
    stale = events(got, "stale")
    assert stale and "past their expected gap" in stale[0]["reason"]  # cadence was learned


@pytest.mark.parametrize("symbols", [("ETHUSDT",), ("BTCUSDT", "ETHUSDT")])
def test_a_frame_over_the_size_limit_is_recorded_and_its_trade_backfilled(
    symbols: tuple[str, ...], tmp_path: Path
) -> None:
    truth_file = tmp_path / "truth.jsonl"

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        options = WsOptions(max_frame_bytes=64 * 1024)
        truth_path = str(truth_file)
        async with ingesting(options, symbols=symbols, ground_truth_path=truth_path) as (
            mock,
            ingestor,
        ):
            await until(lambda: ingestor.stats.frames_received >= 20)
            await mock.inject({"type": "oversized", "stream": "ethusdt@trade", "bytes": 100_000})
            await until(lambda: ingestor.stats.oversized_frames == 1, 10)
            # Not any backfill: with two symbols, BTCUSDT's hole from the reconnect can be
            # filled before ETHUSDT's next live trade reveals the padded trade's hole.
            await until(backfilled(ingestor, "ETHUSDT"), 15, "ETHUSDT's hole backfilled")
        return await entries(ingestor.redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    [marker] = events(got, "oversized_frame")
    connects = [e["conn"] for e in events(got, "connect")]
    assert marker["conn"] == connects[0] and len(connects) == 2  # the first one, then again
    streams = [f"{s.lower()}@trade" for s in symbols]
    assert marker["limit_bytes"] == 64 * 1024 and marker["streams"] == streams
    assert marker["stream"] == (streams[0] if len(streams) == 1 else None)
    assert marker["channel"] == "market" and marker["reason"].startswith("close code 1009")
    sent = read_ground_truth(truth_file).trades_sent()
    for symbol in symbols:
        ids = set(trade_ids(got, symbol))
        truth = {t["trade_id"] for t in sent if t["symbol"] == symbol}
        assert truth & set(range(min(ids), max(ids) + 1)) <= ids, f"{symbol}: trades missing"
    live = [json.loads(f.data)["data"] for f in got if f.kind == "ws"]
    eth_live = {d["t"] for d in live if d.get("e") == "trade" and d["s"] == "ETHUSDT"}
    only_backfilled = set(trade_ids(got, "ETHUSDT")) - eth_live
    [gap] = [g for g in events(got, "gap") if g["symbol"] == "ETHUSDT"]
    assert only_backfilled and only_backfilled <= set(range(gap["first_id"], gap["last_id"] + 1))
    assert ingestor.health_stats()["oversized_frames"] == 1


def test_one_silenced_stream_is_detected_marked_and_its_trades_recovered() -> None:
    """One subscription goes silent at the mock while its sibling on the connection flows."""

    async def scenario() -> list[RawFrame]:
        options = WsOptions(stale_floor_s=0.5, stale_max_s=30.0)
        async with ingesting(options) as (mock, ingestor):
            await until(lambda: ingestor.stats.frames_received >= 100)
            await mock.inject({"type": "stall", "stream": "btcusdt@trade", "duration": 3.0})
            await until(lambda: ingestor.stats.streams_silent >= 1)
            health = ingestor.health_stats()
            assert health["streams_silent"] >= 1
            assert health["stale_detected"] == 0  # the connection itself was never mute
            await until(lambda: ingestor.stats.rotations >= 1)
            # After the fault ends the stream flows again and its hole is backfilled.
            await until(backfilled(ingestor, "BTCUSDT"), 20, "BTCUSDT's hole backfilled")
            after = ingestor.stats.frames_received + 50
            await until(lambda: ingestor.stats.frames_received >= after)
        return await entries(ingestor.redis, RAW)

    got = asyncio.run(scenario())
    silence = [g for g in events(got, "gap") if g.get("kind") == "silence"]
    assert silence and {g["stream"] for g in silence} == {"btcusdt@trade"}
    rotate = events(got, "rotate")
    assert rotate and rotate[0]["reason"] == "silent stream btcusdt@trade"
    ids = sorted(set(trade_ids(got, "BTCUSDT")))
    assert ids == list(range(ids[0], ids[-1] + 1)), "BTCUSDT: a hole"
