"""Publish a stage's health to Redis and read it back for ``--check``, ``streams`` and the UI.

The reporter outlives every Redis error: while Redis refuses the write (``OOM`` at
``maxmemory``, ``BUSY``, ``READONLY``...) or cannot be reached, the key expires (TTL three
intervals) and the reporter logs that once, quoting the server, then keeps trying every interval;
the first write Redis accepts brings the key back. Each record carries the process's Redis
figures (:mod:`common.backpressure`): ``redis_condition`` and ``redis_retries``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.backpressure import PROCESS_FIGURES, RedisFigures, RedisOutage
from tickpipe.common.extras import need
from tickpipe.common.names import Keys
from tickpipe.common.redis_io import REDIS_ERRORS
from tickpipe.common.stopping import wait_stop

if TYPE_CHECKING:
    from tickpipe.common.metrics import MetricsServer

__all__ = ["HealthReporter", "read_health"]

log = logging.getLogger("tickpipe.health")


class HealthReporter:
    """Write ``{ns}:health:{service}:{instance}`` every interval with a TTL of three intervals."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        service: str,
        instance: str,
        *,
        interval_s: float = 1.0,
        stats: Callable[[], dict[str, Any]] | None = None,
        metrics_port: int | None = None,
        figures: RedisFigures | None = None,
    ) -> None:
        self.redis = redis
        self.key = keys.health(service, instance)
        self.service = service
        self.instance = instance
        self.interval_s = interval_s
        self.stage_stats = stats or dict
        self.figures = figures if figures is not None else PROCESS_FIGURES
        self.outage = RedisOutage(log, f"health of {service}", figures=self.figures)
        self.started_ns = time.time_ns()
        self.status = "starting"
        if metrics_port is None:
            metrics_port = _metrics_port_from_env()
        self.metrics_port = metrics_port
        self.metrics: MetricsServer | None = None

    def start_metrics(self) -> int | None:
        """Serve ``/metrics`` from the stats when ``metrics_port`` is set; return the port."""
        if not self.metrics_port or self.metrics is not None:
            return None
        need("metrics", "TICKPIPE_METRICS_PORT (Prometheus /metrics)")
        from tickpipe.common.metrics import MetricsServer, StatsCollector

        collector = StatsCollector(self.service, self.instance, self.stats, lambda: self.status)
        server = MetricsServer(collector, self.metrics_port)
        try:
            port = server.start()
        except OSError as exc:
            log.warning("metrics not served on port %s: %s", self.metrics_port, exc)
            return None
        self.metrics = server
        return port

    def stop_metrics(self) -> None:
        """Stop serving ``/metrics``."""
        if self.metrics is not None:
            self.metrics.stop()
            self.metrics = None

    def stats(self) -> dict[str, Any]:
        """The stage's figures and the process's Redis figures."""
        return {**self.stage_stats(), **self.figures.snapshot()}

    def payload(self) -> bytes:
        return orjson.dumps(
            {
                "service": self.service,
                "instance": self.instance,
                "pid": os.getpid(),
                "status": self.status,
                "started_ns": self.started_ns,
                "updated_ns": time.time_ns(),
                **self.stats(),
            },
            default=str,
        )

    async def publish(self) -> None:
        """Write the record; on any Redis error note it (logged rate-limited) and go on."""
        ttl_ms = max(3000, int(self.interval_s * 3000))
        try:
            await self.redis.set(self.key, self.payload(), px=ttl_ms)
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
        else:
            self.outage.recovered()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish (and serve ``/metrics`` when enabled) until ``stop`` is set; remove the key."""
        self.start_metrics()
        try:
            await self._publish_until(stop)
        finally:
            self.stop_metrics()

    async def _publish_until(self, stop: asyncio.Event) -> None:
        with self.outage:
            while not stop.is_set():
                await self.publish()
                await wait_stop(stop, self.interval_s)
        try:
            await self.redis.delete(self.key)
        except REDIS_ERRORS as exc:  # it expires by itself
            log.debug("health key not removed: %s", exc)


def _metrics_port_from_env() -> int:
    """Read ``TICKPIPE_METRICS_PORT`` (0 or unset: off); a bad value turns metrics off."""
    text = os.environ.get("TICKPIPE_METRICS_PORT", "0").strip() or "0"
    try:
        return max(0, int(text))
    except ValueError:
        log.warning("TICKPIPE_METRICS_PORT=%r is not a port; metrics off", text)
        return 0


async def read_health(
    redis: aioredis.Redis, keys: Keys, service: str = "*"
) -> list[dict[str, Any]]:
    """Return the live health records of ``service`` (every service by default)."""
    out = []
    async for key in redis.scan_iter(match=keys.health_pattern(service), count=200):
        raw = await redis.get(key)
        if raw:
            out.append(orjson.loads(raw))
    return sorted(out, key=lambda h: (h.get("service", ""), h.get("instance", "")))
