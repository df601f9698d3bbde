"""Listen with an aiohttp application on one loopback port, and stop it (shared by venues)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable

from aiohttp import web

__all__ = ["cancel_task", "going_away", "listen", "step_market"]


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
