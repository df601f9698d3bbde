"""Integration tests of liveness, reconnect details and make-before-break rotation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import fakeredis
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.integration.ingestor_support import (
    RAW,
    Numbered,
    entries,
    hold_open,
    ingesting,
    send_trades,
    sending_trades,
    sending_trades_per_connection,
    trade_frame,
)
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.connection import WsOptions
from tickpipe.ingestor.shell import Ingestor

FAST = WsOptions(stale_floor_s=0.3, stale_max_s=5.0, rotate_timeout_s=3.0)


def markers(got: list[RawFrame], event: str) -> list[dict[str, Any]]:
    out = []
    for f in got:
        if f.kind == "marker":
            data = json.loads(f.data)
            if data["event"] == event:
                out.append(data)
    return out


def trade_ids(got: list[RawFrame]) -> list[int]:
    data = [json.loads(f.data)["data"] for f in got if f.kind == "ws"]
    return [d["t"] for d in data if "t" in d]


def test_a_connection_that_goes_mute_is_marked_stale_and_replaced() -> None:
    # A 20 ms cadence, then silence with pings still answered.
    handler = sending_trades_per_connection(20, every_s=0.02, hold=True)

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting(handler, redis, options=FAST) as ingestor:
            await until(lambda: handler.connections >= 2 and ingestor.stats.frames_received >= 30)
        return await entries(redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    stale = markers(got, "stale")
    # Found by the learned cadence: past the hard limit the reason would be "no frame for".
    assert len(stale) >= 1 and "streams past their expected gap" in stale[0]["reason"]
    gone = markers(got, "disconnect")
    assert gone[0]["reason"].startswith("stale: ")
    assert ingestor.stats.stale_detected >= 1 and ingestor.stats.reconnects >= 1
    assert trade_ids(got)[:20] == list(range(1000, 1020))


def test_server_shutdown_rotates_make_before_break() -> None:
    @Numbered
    async def handler(ws: ServerConnection, connection: int) -> None:
        if connection == 1:
            await send_trades(ws, range(1, 4))
            shutdown = {"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}}
            await ws.send(orjson.dumps(shutdown).decode())
            n = 4
            with contextlib.suppress(ConnectionClosed):
                while True:  # keeps delivering until the client closes it
                    await ws.send(trade_frame(n))
                    n += 1
                    await asyncio.sleep(0.01)
            return
        await asyncio.sleep(0.1)
        await send_trades(ws, range(1000, 1005))
        await hold_open(ws)

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting(handler, redis, options=FAST) as ingestor:
            await until(lambda: ingestor.stats.rotations == 1)

            async def has_new_frames() -> bool:
                return 1004 in trade_ids(await entries(redis, RAW))

            await until(has_new_frames)
        return await entries(redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    rotate = markers(got, "rotate")
    assert len(rotate) == 1 and rotate[0]["reason"] == "serverShutdown"
    old, new = rotate[0]["from"], rotate[0]["to"]
    # the old connection kept delivering while the new one connected: an overlap, no hole
    old_ids = trade_ids([f for f in got if f.conn == old])
    assert old_ids[:3] == [1, 2, 3] and len(old_ids) > 4
    first_new = next(i for i, f in enumerate(got) if f.kind == "ws" and f.conn == new)
    old_closed = next(
        i
        for i, f in enumerate(got)
        if f.conn == old and f.kind == "marker" and json.loads(f.data)["event"] == "disconnect"
    )
    assert first_new < old_closed
    assert "closed by us" in json.loads(got[old_closed].data)["reason"]
    assert ingestor.stats.reconnects == 1  # one new connection, opened for the rotation


def test_the_lifetime_limit_rotates_before_the_venue_cuts() -> None:
    handler = sending_trades_per_connection(1000, every_s=0.01)

    async def scenario() -> list[RawFrame]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        options = WsOptions(lifetime_s=0.5, stale_floor_s=1.0, rotate_timeout_s=3.0)
        async with ingesting(handler, redis, options=options) as ingestor:
            await until(lambda: ingestor.stats.rotations >= 2)
        return await entries(redis, RAW)

    got = asyncio.run(scenario())
    rotate = markers(got, "rotate")
    assert len(rotate) >= 2 and "lifetime" in rotate[0]["reason"]
    assert not markers(got, "stale")


def test_a_connection_dropped_soon_after_opening_keeps_backing_off() -> None:
    backoffs: list[Backoff] = []

    def recording_backoff() -> Backoff:
        backoffs.append(Backoff(base_s=0.001, cap_s=0.01, healthy_after_s=10.0))
        return backoffs[-1]

    @Numbered
    async def handler(ws: ServerConnection, connection: int) -> None:
        await ws.send(trade_frame(connection))
        await ws.close(1001, "going away")

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting(handler, redis, backoff_factory=recording_backoff):
            await until(lambda: handler.connections >= 5)

    asyncio.run(scenario())
    assert backoffs[0].attempt >= 4  # never reset by the short-lived connections


def test_a_418_handshake_waits_for_retry_after() -> None:
    attempts: list[float] = []

    def refuse_first(conn: ServerConnection, request: Request) -> Response | None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            headers = Headers({"Retry-After": "1", "Content-Length": "0"})
            return Response(418, "I'm a teapot", headers, b"")
        return None

    handler = sending_trades([1])

    async def scenario() -> list[RawFrame]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        serve_kw = {"process_request": refuse_first}
        async with ingesting(handler, redis, serve_kw=serve_kw) as ingestor:
            await until(lambda: ingestor.stats.frames_received >= 1)
        return await entries(redis, RAW)

    got = asyncio.run(scenario())
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.95
    assert trade_ids(got) == [1]
