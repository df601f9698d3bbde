"""``--check`` (the containers' health check) against health records in a fake Redis."""

from __future__ import annotations

import asyncio

import fakeredis
import orjson
import pytest

from tickpipe.common import stage
from tickpipe.common.settings import Settings


def check(monkeypatch: pytest.MonkeyPatch, statuses: list[str]) -> int:
    server = fakeredis.FakeServer()
    settings = Settings()

    async def main() -> int:
        redis = fakeredis.FakeAsyncRedis(server=server)
        for n, status in enumerate(statuses):
            record = {"service": "processor", "instance": f"p{n}", "status": status}
            await redis.set(settings.keys.health("processor", f"p{n}"), orjson.dumps(record))
        await redis.aclose()
        return await stage._check(settings, "processor")

    monkeypatch.setattr(stage, "discover_redis_url", lambda s: "redis://fake:6379/0")
    monkeypatch.setattr(stage, "connect_redis", lambda url: fakeredis.FakeAsyncRedis(server=server))
    return asyncio.run(main())


def test_check_passes_when_every_replica_is_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(monkeypatch, ["ok", "ok"]) == 0


def test_check_fails_when_any_replica_is_not_healthy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(monkeypatch, ["ok", "degraded"]) == 1
    assert "processor p1: degraded" in capsys.readouterr().out


def test_check_fails_when_no_replica_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(monkeypatch, []) == 1
