"""Run the dashboard stage: a web server thread serving the Dash app, health, clean stop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from dash.exceptions import PreventUpdate
from werkzeug.serving import BaseWSGIServer, make_server

from common.health import HealthReporter
from common.procs import listen_socket
from common.redis_io import REDIS_ERRORS, connect_redis, is_redis_down
from common.settings import Settings
from dashboard.app import build_app

__all__ = ["SERVICE", "DashboardServer", "run"]

SERVICE = "dashboard"
log = logging.getLogger("tickpipe.dashboard")


class DashboardServer:
    """The Dash app on a threaded WSGI server whose callbacks read Redis on ``loop``."""

    def __init__(
        self, settings: Settings, redis: aioredis.Redis, loop: asyncio.AbstractEventLoop,
        *, host: str, port: int, refresh_ms: int = 1000, port_label: str | None = None,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.loop = loop
        self.requests = 0
        self.read_errors = 0
        token = settings.dashboard_token.reveal()
        self.app = build_app(settings, self.call, token=token, refresh_ms=refresh_ms)
        # Bind here: werkzeug prints to stderr and exits when the port is taken. A taken port is
        # the user's to fix (exit code 2), never a crash to restart.
        with listen_socket(host, port, port_label or f"--port {port}") as sock:
            self.server: BaseWSGIServer = make_server(
                host, port, self.app.server, threaded=True, fd=sock.fileno()
            )
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="dashboard-http")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def call(self, read: Callable[[aioredis.Redis], Awaitable[Any]]) -> Any:
        """Run ``read(redis)`` on the stage's loop; skip this update when Redis does not answer."""
        self.requests += 1

        async def go() -> Any:
            return await read(self.redis)

        future = asyncio.run_coroutine_threadsafe(go(), self.loop)
        try:
            return future.result(timeout=10)
        except (*REDIS_ERRORS, concurrent.futures.TimeoutError) as exc:
            if isinstance(exc, REDIS_ERRORS) and not is_redis_down(exc):
                raise
            self.read_errors += 1
            log.warning("dashboard read failed: %s", exc)
            raise PreventUpdate from exc

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "callbacks": self.requests, "read_errors": self.read_errors}


async def run(
    settings: Settings, stop: asyncio.Event, *, redis: aioredis.Redis | None = None,
    host: str = "127.0.0.1", port: int | None = None, refresh_ms: int = 1000,
    on_ready: Callable[[DashboardServer], None] | None = None,
) -> None:  # fmt: skip
    """Serve the dashboard until ``stop`` is set."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    own = redis is None
    redis = redis or connect_redis(settings.redis_url)
    loop = asyncio.get_running_loop()
    if port is None:
        port, label = settings.dashboard_port, f"TICKPIPE_DASHBOARD_PORT={settings.dashboard_port}"
    else:
        label = f"--port {port}"
    server = DashboardServer(
        settings, redis, loop, host=host, port=port, refresh_ms=refresh_ms, port_label=label
    )
    health = HealthReporter(
        redis, settings.keys, SERVICE, settings.instance,
        interval_s=settings.health_interval_s, stats=server.stats,
    )  # fmt: skip
    server.start()
    health.status = "ok"
    log.info(
        "dashboard listening", extra={"url": server.url, "token": bool(settings.dashboard_token)}
    )
    if on_ready:
        on_ready(server)
    try:
        await health.run(stop)
    finally:
        await asyncio.to_thread(server.stop)
        if own:
            await redis.aclose()
        log.info("dashboard stopped")
