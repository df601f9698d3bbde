"""Helpers of the ingestor's integration tests: in-test venues (WebSocket, REST), runners."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ClassVar

import fakeredis
import orjson
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.rawread import rawframes
from tickpipe.common.backoff import Backoff
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.ingestor.shell import Ingestor

__all__ = [
    "PRIVATE",
    "RAW",
    "Handler",
    "Numbered",
    "RestVenue",
    "entries",
    "fast_backoff",
    "fast_ingestor",
    "hold_open",
    "ingesting",
    "ingesting_with_rest",
    "redis_down",
    "rest_frames",
    "rest_venue",
    "running",
    "send_trades",
    "sending",
    "sending_trades",
    "sending_trades_per_connection",
    "settings_for",
    "trade_frame",
    "venue",
]

Handler = Callable[[ServerConnection], Awaitable[None]]
Serve = Callable[[ServerConnection, int], Awaitable[None]]
RAW = "it:{binance:0}:raw"
PRIVATE = "it:{binance}:private-raw"


def trade_frame(trade_id: int, symbol: str = "BTCUSDT") -> str:
    """Return one combined-stream Binance trade frame as the venue sends it."""
    data = {
        "e": "trade",
        "E": 1_723_161_255_343,
        "s": symbol,
        "t": trade_id,
        "p": "61837.63000000",
        "q": "0.02000000",
        "T": 1_723_161_255_342,
        "m": True,
        "M": True,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@trade", "data": data}).decode()


@contextlib.asynccontextmanager
async def venue(handler: Handler, **serve_kw: Any) -> AsyncIterator[str]:
    """Serve ``handler`` as the venue's WebSocket endpoint; yield its ``ws://`` URL.

    ``serve_kw`` go to :func:`websockets.asyncio.server.serve` (``process_request``, ...).
    """
    async with serve(handler, "127.0.0.1", 0, **serve_kw) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


def settings_for(url: str, **extra: Any) -> Settings:
    """Return settings of one BTCUSDT trade stream against the venue at ``url``."""
    values: dict[str, Any] = {
        "namespace": "it",
        "symbols": ("BTCUSDT",),
        "binance_ws_url": url,
        "binance_ws_api_url": f"{url}/ws-api/v3",
        "instance": "test-1",
        "health_interval_s": 0.05,
        "ingestor_journal_max_mb": 0,
        "channels": ("trade",),
    }
    values.update(extra)
    return Settings(**values)


def fast_backoff() -> Backoff:
    """Return a reconnect backoff in tens of milliseconds."""
    return Backoff(base_s=0.01, cap_s=0.05, healthy_after_s=10.0)


def redis_down() -> tuple[fakeredis.FakeServer, fakeredis.FakeAsyncRedis]:
    """Return a fakeredis server and client that refuse commands until ``server.connected``."""
    server = fakeredis.FakeServer()
    server.connected = False
    return server, fakeredis.FakeAsyncRedis(server=server)


def fast_ingestor(settings: Settings, redis: Any, **kw: Any) -> Ingestor:
    """Return an ingestor writing to ``redis`` that reconnects within tens of milliseconds.

    ``kw`` go to :class:`Ingestor`; a ``backoff_factory`` among them replaces the fast one.
    """
    return Ingestor(settings, redis=redis, **({"backoff_factory": fast_backoff} | kw))


async def entries(redis: Any, stream: str) -> list[RawFrame]:
    """Return every raw frame of ``stream``, decoded (a packed entry holds several)."""
    return rawframes(await redis.xrange(stream))


async def hold_open(ws: ServerConnection) -> None:
    """Keep the venue's side of a connection open until the client closes it."""
    with contextlib.suppress(Exception):
        await ws.wait_closed()


async def send_trades(ws: ServerConnection, ids: Iterable[int], every_s: float = 0) -> None:
    """Send a BTCUSDT trade frame for each of ``ids``, ``every_s`` apart."""
    for trade_id in ids:
        await ws.send(trade_frame(trade_id))
        if every_s:
            await asyncio.sleep(every_s)


class Numbered:
    """A venue handler that tells ``serve`` which connection it serves (1 for the first)."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0

    async def __call__(self, ws: ServerConnection) -> None:
        self.connections += 1
        await self.serve(ws, self.connections)


def sending(frames: Iterable[str]) -> Handler:
    """Return a venue handler that sends ``frames`` on each connection, then holds it open."""
    batch = list(frames)

    async def handler(ws: ServerConnection) -> None:
        for frame in batch:
            await ws.send(frame)
        await hold_open(ws)

    return handler


def sending_trades(ids: Iterable[int]) -> Handler:
    """Return a venue handler that sends a trade frame for each of ``ids``, then holds on."""
    return sending(trade_frame(trade_id) for trade_id in ids)


def sending_trades_per_connection(count: int, every_s: float, *, hold: bool = False) -> Numbered:
    """Return a venue handler that sends ``count`` trades ``every_s`` apart on each connection,
    numbered from 1000 times the connection's number; then holds it open if ``hold``."""

    async def serve(ws: ServerConnection, connection: int) -> None:
        base = connection * 1000
        with contextlib.suppress(ConnectionClosed):
            await send_trades(ws, range(base, base + count), every_s=every_s)
        if hold:
            await hold_open(ws)

    return Numbered(serve)


@contextlib.asynccontextmanager
async def running(ingestor: Ingestor, stop_timeout_s: float = 10) -> AsyncIterator[Ingestor]:
    """Run ``ingestor`` for the body of the block, then stop it and wait for its clean exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    try:
        yield ingestor
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout_s)


@contextlib.asynccontextmanager
async def ingesting(
    handler: Handler,
    redis: Any,
    *,
    settings: dict[str, Any] | None = None,
    serve_kw: dict[str, Any] | None = None,
    **kw: Any,
) -> AsyncIterator[Ingestor]:
    """Serve ``handler`` as the venue and run a :func:`fast_ingestor` on it for the block.

    ``settings`` change :func:`settings_for`, ``serve_kw`` go to :func:`venue`, ``kw`` to the
    ingestor.
    """
    async with venue(handler, **(serve_kw or {})) as url:
        ingestor = fast_ingestor(settings_for(url, **(settings or {})), redis, **kw)
        async with running(ingestor):
            yield ingestor


class RestVenue:
    """The venue's REST API in the test: ``routes`` maps each GET path it serves to the name of
    the method that answers it."""

    routes: ClassVar[dict[str, str]] = {}

    def app(self) -> web.Application:
        """Return the aiohttp application that serves :attr:`routes`."""
        app = web.Application()
        for path, method in self.routes.items():
            app.router.add_get(path, getattr(self, method))
        return app


@contextlib.asynccontextmanager
async def rest_venue(fake: RestVenue) -> AsyncIterator[str]:
    """Serve ``fake`` on a free loopback port for the block; yield its ``http://`` URL."""
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def rest_frames(got: list[RawFrame], channel: str) -> list[dict[str, Any]]:
    """Return the decoded REST answers of ``channel`` among the raw entries ``got``."""
    return [json.loads(f.data) for f in got if f.kind == "rest" and f.channel == channel]


@contextlib.asynccontextmanager
async def ingesting_with_rest(
    handler: Handler, fake: RestVenue, redis: Any, **extra: Any
) -> AsyncIterator[Ingestor]:
    """Run an ingestor against the venue ``handler`` with ``fake`` as its REST API."""
    async with venue(handler) as url, rest_venue(fake) as rest_url:
        settings = settings_for(url, binance_rest_url=rest_url, **extra)
        ingestor = fast_ingestor(settings, redis)
        async with running(ingestor):
            yield ingestor
