"""A trade-id hole through the shell: control request, warnings, health, resolution (fakeredis).

The ingestor's part is played by hand with the entries the contract names.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import fakeredis
import orjson
import pytest

from tests.integration.test_processor_shell import P, start
from tests.unit.test_processor_holes import Raw
from tests.waits import until
from tickpipe.common.schema import RawFrame, decode_fields
from tickpipe.common.settings import Settings


async def _read(redis: Any, key: str) -> list[dict[str, str]]:
    return [decode_fields(f) for _, f in await redis.xrange(key)]


async def _write(redis: Any, settings: Settings, entries: list[tuple[str, RawFrame]]) -> None:
    for _, frame in entries:
        await redis.xadd(settings.keys.raw(P), frame.to_fields())


async def _health(redis: Any, settings: Settings) -> dict[str, Any]:
    raw = await redis.get(settings.keys.health("processor", settings.instance))
    return orjson.loads(raw) if raw else {}


def test_a_hole_is_asked_for_shown_in_health_logged_and_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = Settings(namespace="ph", symbols=("BTCUSDT",), instance="m1",
                            health_interval_s=0.05)  # fmt: skip
        keys = settings.keys
        raw = Raw()
        await _write(redis, settings, [raw.live(1), raw.live(2), raw.live(7)])
        task, stop = start(settings, redis)

        async def asked() -> bool:
            return (
                bool(await redis.xlen(keys.control(P)))
                and (await _health(redis, settings)).get("open_gaps") == 1
            )

        await until(asked)
        (request,) = await _read(redis, keys.control(P))
        assert {k: request[k] for k in ("action", "symbol", "first_id", "last_id", "stream")} == {
            "action": "backfill", "symbol": "BTCUSDT", "first_id": "3", "last_id": "6",
            "stream": "trades",
        }  # fmt: skip
        (gap,) = await _read(redis, keys.gaps(P))
        assert (gap["kind"], gap["expected"], gap["received"]) == ("gap", "3", "7")

        # The ingestor serves it: two pages, the venue had nothing for 6, then its marker.
        await _write(redis, settings, [raw.page([3, 4]), raw.page([5])])
        await _write(redis, settings, [raw.done(3, 6, fetched=3, outcome="partial")])

        async def resolved() -> bool:
            return (
                len(await _read(redis, keys.gaps(P))) == 2
                and (await _health(redis, settings)).get("open_gaps") == 0
            )

        await until(resolved)
        stop.set()
        await asyncio.wait_for(task, 5)
        resolution = (await _read(redis, keys.gaps(P)))[1]
        assert (resolution["kind"], resolution["status"], resolution["missing"]) == (
            "resolution", "unrecoverable", "1",
        )  # fmt: skip
        assert resolution["reason"] == "backfill partial: venue returned no trades for ids 6"
        trades = [int(t["trade_id"]) for t in await _read(redis, keys.trades(P))]
        assert trades == [1, 2, 7, 3, 4, 5]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            "ids 3..6 of BTCUSDT (trades) missing: backfill requested" in w for w in warnings
        )
        assert any(
            "ids 3..6 of BTCUSDT (trades) unrecoverable: 1 still missing" in w for w in warnings
        )

    caplog.set_level(logging.WARNING, logger="tickpipe.processor")
    asyncio.run(scenario())
