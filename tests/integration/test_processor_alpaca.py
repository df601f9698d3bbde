"""Real Alpaca msgpack frames from the mock, through the processor shell on fakeredis."""

from __future__ import annotations

import asyncio
import base64
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis
import msgpack
from websockets.asyncio.client import connect

from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.names import Partition
from tickpipe.common.schema import Bar, RawFrame, Trade, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.mock_ws import read_ground_truth, start_mock
from tickpipe.processor.shell import run

P = Partition("alpaca", 0)
AUTH = {"action": "auth", "key": "mock-key", "secret": "mock-secret"}
SUBSCRIBE = {"action": "subscribe", "trades": ["FAKEPACA"], "quotes": ["FAKEPACA"]}
MSGPACK = {"Content-Type": "application/msgpack"}
WANTED_TRADES = 25


async def capture(url: str) -> list[bytes]:
    """Log in to the test stream in msgpack mode; return every frame until enough trades came."""
    frames: list[bytes] = []
    trades = 0
    async with connect(url, additional_headers=MSGPACK) as ws:
        await ws.send(msgpack.packb(AUTH))
        subscribed = False
        while trades < WANTED_TRADES:
            frame = await asyncio.wait_for(ws.recv(), 3.0)
            assert isinstance(frame, bytes)
            frames.append(frame)
            messages = msgpack.unpackb(frame, timestamp=0)
            if not subscribed and messages == [{"T": "success", "msg": "authenticated"}]:
                await ws.send(msgpack.packb(SUBSCRIBE))
                subscribed = True
            trades += sum(1 for m in messages if m["T"] == "t")
        # Stop the flow and keep every frame sent before the venue confirms it.
        await ws.send(msgpack.packb({"action": "unsubscribe", "trades": ["FAKEPACA"]}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 3.0)
            assert isinstance(frame, bytes)
            frames.append(frame)
            messages = msgpack.unpackb(frame, timestamp=0)
            if any(m["T"] == "subscription" and m["trades"] == [] for m in messages):
                return frames


def raw_frames(frames: list[bytes]) -> list[RawFrame]:
    """Store frames as the ingestor does: kind ws-binary, data = base64 of the exact bytes."""
    return [
        RawFrame("ws-binary", "alpaca", "c1", seq, time.time_ns(), base64.b64encode(f).decode())
        for seq, f in enumerate(frames)
    ]


def test_mock_trades_come_out_exactly_once(tmp_path: Path) -> None:
    truth_path = tmp_path / "truth.jsonl"
    settings = Settings(
        namespace="pa", venue="alpaca", symbols=("FAKEPACA",), instance="m1", batch_size=7
    )

    async def main() -> None:
        mock = await start_mock(alpaca_port=0, trades_per_s=60.0, ground_truth_path=str(truth_path))
        try:
            assert mock.alpaca_data_url is not None
            frames = await capture(mock.alpaca_data_url + "/v2/test")
        finally:
            await mock.close()
        redis: Any = fakeredis.FakeAsyncRedis()
        stored = raw_frames(frames)
        # A reconnect may deliver frames twice: the second copy must not duplicate trades.
        for frame in [*stored, *stored]:
            await redis.xadd(settings.keys.raw(P), frame.to_fields())
        sent = [
            e
            for e in read_ground_truth(truth_path).events("alpaca_trade_sent")
            if e["feed"] == "/v2/test"
        ]
        assert len(sent) >= WANTED_TRADES
        trades_key = settings.keys.trades(P)

        async def all_trades_out() -> bool:
            return int(await redis.xlen(trades_key)) >= len(sent)

        async def all_read() -> bool:
            if await redis.get(settings.keys.checkpoint(P)) is None:
                return False
            pending = await redis.xpending(settings.keys.raw(P), "processor")
            return pending["pending"] == 0 and await all_trades_out()

        async with stage_running(run, settings, redis=redis, clock=lambda: 42):
            await until(all_read)
        trades = [Trade.from_fields(f) for _, f in await redis.xrange(trades_key)]
        got = sorted((int(t.trade_id), Decimal(t.price), Decimal(t.qty)) for t in trades)
        want = sorted(
            (int(e["trade_id"]), Decimal(str(e["price"])), Decimal(str(e["size"]))) for e in sent
        )
        assert got == want
        assert all(t.symbol == "FAKEPACA" and t.side == "unknown" for t in trades)
        by_id = {int(e["trade_id"]): e["t"] for e in sent}
        assert all(t.ts_event == by_id[int(t.trade_id)] and t.ts_proc == 42 for t in trades)
        quotes = await redis.xlen(settings.keys.quotes(P))
        dead = [decode_fields(f) for _, f in await redis.xrange(settings.keys.dead_letters(P))]
        assert quotes > 0 and dead == []
        bars = [Bar.from_fields(f) for _, f in await redis.xrange(settings.keys.bars(P, "1s"))]
        assert bars and all(b.venue == "alpaca" and b.symbol == "FAKEPACA" for b in bars)
        health = [k async for k in redis.scan_iter(settings.keys.health_pattern("processor"))]
        assert health == []

    asyncio.run(main())
