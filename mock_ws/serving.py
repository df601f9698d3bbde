"""Listen with an aiohttp application on one loopback port, and stop it (shared by venues).

:class:`MarketServer` is the start and stop of a venue mock that is an aiohttp application
driven by a market loop (Alpaca, IBKR): listen, step the market, and on close stop the loop,
let the connections go and stop listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import ClassVar

from aiohttp import web

from tickpipe.mock_ws.market import MarketSim

__all__ = ["MarketServer", "cancel_task", "going_away", "listen", "step_market"]


async def listen(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0 = any free port, TLS with ``ssl_context``); return the
    runner and the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        sock.close()
        raise
    return runner, int(sock.getsockname()[1])


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def going_away(sockets: Iterable[web.WebSocketResponse], timeout_s: float = 2.0) -> None:
    """Close each WebSocket with 1001 (going away), waiting ``timeout_s`` at most for each."""
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=1001, message=b"server shutdown"), timeout_s)


async def step_market(
    step: Callable[[int], None], clock: Callable[[], int], trades_per_s: float
) -> None:
    """Call ``step(now_ns)`` for ever, at a pace that follows the trade rate (5 to 50 ms)."""
    interval_s = min(0.05, max(0.005, 1.0 / trades_per_s))
    while True:
        step(clock())
        await asyncio.sleep(interval_s)


class MarketServer:
    """A venue mock's aiohttp ``app`` and its market loop, which calls ``step`` at the trade pace.

    A subclass sets ``app``, ``sim`` and ``clock``, names its loop task and says how its
    connections are let go (:meth:`release_connections`).
    """

    market_task_name: ClassVar[str]
    app: web.Application
    sim: MarketSim
    clock: Callable[[], int]
    _runner: web.AppRunner | None = None
    _loop_task: asyncio.Task[None] | None = None
    _closing = False

    def step(self, now_ns: int) -> None:
        """Advance the market to ``now_ns``."""
        raise NotImplementedError

    async def release_connections(self) -> None:
        """Let every open connection go while the server closes."""
        raise NotImplementedError

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listen on ``host:port`` (0 = any free port, TLS with ``ssl_context``), start the market
        loop; return the port."""
        self._runner, bound = await listen(self.app, host, port, ssl_context)
        market = step_market(self.step, self.clock, self.sim.trades_per_s)
        self._loop_task = asyncio.create_task(market, name=self.market_task_name)
        return bound

    async def close(self) -> None:
        """Stop the market loop, let every connection go and stop listening."""
        self._closing = True
        await cancel_task(self._loop_task)
        await self.release_connections()
        if self._runner is not None:
            await self._runner.cleanup()
