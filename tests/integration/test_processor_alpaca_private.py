"""Real Alpaca trade_updates frames from the mock, through the processor's private lane."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import msgpack
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.common.settings import Settings
from tickpipe.mock_ws import read_ground_truth, start_mock
from tickpipe.processor.shell import run
from tickpipe.venues.alpaca.wire import map_status

HEADERS = {"APCA-API-KEY-ID": "mock-key", "APCA-API-SECRET-KEY": "mock-secret"}
AUTH = {"action": "auth", "key": "mock-key", "secret": "mock-secret"}
LISTEN = {"action": "listen", "data": {"streams": ["trade_updates"]}}


def decode(frame: bytes, use_msgpack: bool) -> Any:
    return msgpack.unpackb(frame) if use_msgpack else orjson.loads(frame)


def stored(frame: bytes, seq: int) -> RawFrame:
    """Store a frame as the ingestor does: UTF-8 JSON as ``ws`` text, msgpack as base64."""
    try:
        return RawFrame("ws", "alpaca", "t1", seq, time.time_ns(), frame.decode())
    except UnicodeDecodeError:
        data = base64.b64encode(frame).decode()
        return RawFrame("ws-binary", "alpaca", "t1", seq, time.time_ns(), data)


async def capture(mock: Any, use_msgpack: bool) -> list[bytes]:
    """Place, cancel and fill orders; return every trading-stream frame up to the fill."""
    frames: list[bytes] = []
    headers = {"Content-Type": "application/msgpack"} if use_msgpack else {}
    pack = msgpack.packb if use_msgpack else orjson.dumps
    async with (
        connect(mock.alpaca_trading_url, additional_headers=headers) as ws,
        aiohttp.ClientSession(base_url=f"{mock.alpaca_rest_url}/", headers=HEADERS) as http,
    ):

        async def next_frame() -> Any:
            frame = await asyncio.wait_for(ws.recv(), 3.0)
            assert isinstance(frame, bytes)
            frames.append(frame)
            return decode(frame, use_msgpack)

        await ws.send(pack(AUTH))
        assert (await next_frame())["data"]["status"] == "authorized"
        await ws.send(pack(LISTEN))
        assert (await next_frame())["stream"] == "listening"
        body = {
            "symbol": "FAKEPACA",
            "qty": "2",
            "side": "buy",
            "type": "limit",
            "time_in_force": "day",
            "limit_price": "1.00",
            "client_order_id": "tp-a",
        }
        async with http.post("v2/orders", json=body) as response:
            order = await response.json()
        async with http.delete(f"v2/orders/{order['id']}") as response:
            assert response.status == 204
        body = {**body, "type": "market", "client_order_id": "tp-b"}
        del body["limit_price"]
        async with http.post("v2/orders", json=body) as response:
            assert response.status == 200
        while True:
            message = await next_frame()
            if message.get("data", {}).get("event") == "fill":
                return frames


@pytest.mark.parametrize("use_msgpack", [False, True], ids=["json", "msgpack"])
def test_trade_updates_become_order_updates(tmp_path: Path, use_msgpack: bool) -> None:
    truth_path = tmp_path / "truth.jsonl"
    settings = Settings(namespace="pp", venue="alpaca", symbols=("FAKEPACA",), instance="m1")

    async def main() -> None:
        mock = await start_mock(alpaca_port=0, trades_per_s=40.0, ground_truth_path=str(truth_path))
        try:
            frames = await capture(mock, use_msgpack)
        finally:
            await mock.close()
        redis: Any = fakeredis.FakeAsyncRedis()
        raws = [stored(f, n) for n, f in enumerate(frames)]
        assert {r.kind for r in raws} == {"ws-binary" if use_msgpack else "ws"}
        for frame in [*raws, *raws]:  # a second copy must not repeat any update
            await redis.xadd(settings.keys.private_raw("alpaca"), frame.to_fields())
        truth = read_ground_truth(truth_path).events("alpaca_trade_update")
        assert [e["event"] for e in truth] == ["new", "canceled", "new", "fill"]
        updates_key = settings.keys.order_updates("alpaca")

        async def all_read() -> bool:
            if await redis.get(settings.keys.venue_checkpoint("alpaca")) is None:
                return False
            pending = await redis.xpending(settings.keys.private_raw("alpaca"), "processor")
            return pending["pending"] == 0 and int(await redis.xlen(updates_key)) >= len(truth)

        async with stage_running(run, settings, redis=redis, clock=lambda: 42):
            await until(all_read)
        updates = [OrderUpdate.from_fields(f) for _, f in await redis.xrange(updates_key)]
        assert [(u.client_order_id, u.order_id, u.status) for u in updates] == [
            (e["client_order_id"], e["order_id"], map_status(e["status"])) for e in truth
        ]
        assert [u.exec_type for u in updates] == ["NEW", "CANCELED", "NEW", "TRADE"]
        fill = updates[-1]
        assert (fill.status, fill.filled_qty, fill.last_qty) == ("FILLED", "2", truth[-1]["qty"])
        assert fill.last_price == truth[-1]["price"] and fill.trade_id
        assert all(u.venue == "alpaca" and u.symbol == "FAKEPACA" for u in updates)
        assert await redis.xlen(settings.keys.venue_dead_letters("alpaca")) == 0

    asyncio.run(main())
