"""Serve a stage's health stats as Prometheus metrics on ``/metrics``.

:class:`StatsCollector` turns the same ``stats()`` mapping a :class:`~common.health.HealthReporter`
publishes into gauges named ``tickpipe_<stat>`` labelled with ``service`` and ``instance``:
numbers and booleans become one sample each; a mapping of numbers (or decimal strings) becomes
one gauge with a ``key`` label. Text stats (errors, URLs) are left out. ``tickpipe_up`` is 1 while
the stage reports ``ok``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["MetricsServer", "StatsCollector", "metric_name"]

log = logging.getLogger("tickpipe.metrics")

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(stat: str) -> str:
    """Return the Prometheus name of a stat: ``frames_per_s`` → ``tickpipe_frames_per_s``."""
    return "tickpipe_" + _INVALID.sub("_", stat)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


class StatsCollector(Collector):
    """Collect gauges from ``stats()`` each time Prometheus scrapes."""

    def __init__(
        self,
        service: str,
        instance: str,
        stats: Callable[[], Mapping[str, Any]],
        status: Callable[[], str] = lambda: "ok",
    ) -> None:
        self.labels = {"service": service, "instance": instance}
        self.stats = stats
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        names, values = list(self.labels), list(self.labels.values())
        up = GaugeMetricFamily("tickpipe_up", "1 while the stage reports ok", labels=names)
        up.add_metric(values, 1.0 if self.status() == "ok" else 0.0)
        yield up
        try:
            stats = dict(self.stats())
        except Exception as exc:  # a scrape must never take the stage down
            log.warning("stats unavailable for metrics: %r", exc)
            return
        for stat, value in sorted(stats.items()):
            name = metric_name(stat)
            if isinstance(value, Mapping):
                gauge = GaugeMetricFamily(name, f"health stat {stat}", labels=[*names, "key"])
                for key, item in sorted(value.items()):
                    number = _number(item)
                    if number is not None:
                        gauge.add_metric([*values, str(key)], number)
                if gauge.samples:
                    yield gauge
                continue
            number = _number(value) if not isinstance(value, str) else None
            if number is not None:
                gauge = GaugeMetricFamily(name, f"health stat {stat}", labels=names)
                gauge.add_metric(values, number)
                yield gauge


class MetricsServer:
    """An HTTP server thread answering ``/metrics`` from one :class:`StatsCollector`."""

    def __init__(self, collector: StatsCollector, port: int, host: str = "127.0.0.1") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.port = port
        self.host = host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen (port 0 picks a free one) and return the port."""
        server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        log.info("metrics listening", extra={"url": f"http://{self.host}:{self.port}/metrics"})
        return self.port

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None
