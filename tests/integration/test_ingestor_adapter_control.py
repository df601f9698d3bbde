"""Integration tests: an adapter-driven venue's control follower rides out Redis refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
from redis.exceptions import ResponseError

from tickpipe.common.settings import Settings
from tickpipe.ingestor.adapter_control import AdapterControl


class Adapter:
    def __init__(self) -> None:
        self.changes: list[tuple[str, list[str]]] = []
        self.changed = asyncio.Event()

    def change(self, action: str, symbols: list[str]) -> None:
        self.changes.append((action, symbols))
        self.changed.set()


class Refusing(fakeredis.FakeAsyncRedis):
    """Refuses the first reads with a server error (the stage-wide retry list holds it)."""

    refusals = 2

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        if self.refusals:
            self.refusals -= 1
            raise ResponseError("MISCONF Redis cannot save RDB snapshots")
        return await super().xread(*args, **kwargs)


def test_a_refused_read_is_retried_and_the_change_still_applied() -> None:
    """A Redis error reply on the follow read ended the follower; the subscription was lost."""

    async def scenario() -> list[tuple[str, list[str]]]:
        settings = Settings(venue="alpaca", namespace="tac")
        redis = Refusing(server=fakeredis.FakeServer())
        adapter = Adapter()
        halt = asyncio.Event()
        control = AdapterControl(settings, adapter)
        task = asyncio.create_task(control.run(redis, halt))
        await redis.xadd(control.keys[0], {"action": "subscribe", "symbols": "AAPL"})
        changed = asyncio.create_task(adapter.changed.wait())
        await asyncio.wait({changed, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        changed.cancel()
        halt.set()
        await asyncio.wait_for(task, 5)
        return adapter.changes

    assert asyncio.run(scenario()) == [("subscribe", ["AAPL"])]
