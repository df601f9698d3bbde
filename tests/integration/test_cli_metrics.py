"""Each stage's /metrics endpoint: the health stats as Prometheus gauges, on and off by setting."""

from __future__ import annotations

import asyncio
import urllib.request

import fakeredis
import pytest

from tests.ports import free_port
from tickpipe.common.health import HealthReporter
from tickpipe.common.metrics import MetricsServer, StatsCollector, metric_name
from tickpipe.common.names import Keys


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


def test_collector_turns_numbers_flags_and_maps_into_gauges() -> None:
    stats = {"frames_per_s": 12.5, "reconnects": 3, "redis_up": True, "last_error": "boom",
             "positions": {"BTCUSDT": "0.002", "X": "n/a"}, "owned": ["binance:0"],
             "latency": None}  # fmt: skip
    collector = StatsCollector("ingestor", "i1", lambda: stats)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in collector.collect() for s in family.samples}  # fmt: skip
    labels = (("instance", "i1"), ("service", "ingestor"))
    assert samples[("tickpipe_up", labels)] == 1.0
    assert samples[("tickpipe_frames_per_s", labels)] == 12.5
    assert samples[("tickpipe_reconnects", labels)] == 3.0
    assert samples[("tickpipe_redis_up", labels)] == 1.0
    assert samples[("tickpipe_positions", (*labels[:1], ("key", "BTCUSDT"), labels[1]))] == 0.002
    assert not any(name in ("tickpipe_last_error", "tickpipe_owned") for name, _ in samples)
    assert metric_name("bars:1m/x") == "tickpipe_bars_1m_x"


def test_a_failing_stats_callable_still_answers_up() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("dictionary changed size during iteration")

    families = list(StatsCollector("s", "i", broken, lambda: "starting").collect())
    assert [f.name for f in families] == ["tickpipe_up"] and families[0].samples[0].value == 0.0


def test_metrics_server_reads_the_stats_at_each_scrape() -> None:
    counter = {"frames": 0}
    server = MetricsServer(StatsCollector("processor", "p1", lambda: dict(counter)), 0)
    port = server.start()
    try:
        counter["frames"] = 41
        assert 'tickpipe_frames{instance="p1",service="processor"} 41.0' in _scrape(port)
        counter["frames"] = 42
        assert 'tickpipe_frames{instance="p1",service="processor"} 42.0' in _scrape(port)
    finally:
        server.stop()


def test_metrics_port_setting_turns_the_endpoint_on(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("TICKPIPE_METRICS_PORT", str(port))

    async def go() -> str:
        stop = asyncio.Event()
        reporter = HealthReporter(fakeredis.FakeAsyncRedis(), Keys("m"), "trader", "t1",
                                  interval_s=0.05, stats=lambda: {"orders_sent": 7})  # fmt: skip
        task = asyncio.create_task(reporter.run(stop))
        reporter.status = "ok"
        for _ in range(100):
            if reporter.metrics is not None:
                break
            await asyncio.sleep(0.01)
        text = await asyncio.to_thread(_scrape, port)
        stop.set()
        await task
        assert reporter.metrics is None
        return text

    text = asyncio.run(go())
    assert 'tickpipe_orders_sent{instance="t1",service="trader"} 7.0' in text
    assert 'tickpipe_up{instance="t1",service="trader"} 1.0' in text


def test_metrics_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKPIPE_METRICS_PORT", raising=False)
    reporter = HealthReporter(fakeredis.FakeAsyncRedis(), Keys("m"), "trader", "t1")
    assert reporter.metrics_port == 0 and reporter.start_metrics() is None
    monkeypatch.setenv("TICKPIPE_METRICS_PORT", "not-a-port")
    assert HealthReporter(fakeredis.FakeAsyncRedis(), Keys("m"), "t", "t").metrics_port == 0
