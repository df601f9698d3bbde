"""Integration tests of the venue clock: a mock whose clock is off, orders still accepted.

The mock's clock is skewed by a drawn offset (printed, with the seed); the trader estimates the
offset from the WebSocket API's ``time`` answers, stamps signed requests with corrected time,
and reports the estimate in its health.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import fakeredis
import orjson
import pytest

from tests.integration.test_trader_mock import make_signal, wait_for_events
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.settings import Secret, Settings
from tickpipe.common.units import MS, client_order_id_for
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run

SEED = random.randrange(2**32)
RNG = random.Random(SEED)


@pytest.mark.parametrize(
    ("case", "skew_range_ms", "state"),
    [
        # The venue runs behind: an uncorrected stamp is >= 1000 ms ahead of it (-1021).
        ("venue behind", (-4000, -1500), "beyond"),
        # The venue runs ahead, inside the 5000 ms window: accepted, with a warning.
        ("venue ahead, near the window", (3000, 4500), "near"),
        # The venue runs ahead past the window: every uncorrected stamp is too old (-1021).
        ("venue ahead, past the window", (6000, 9000), "beyond"),
    ],
)
def test_orders_are_accepted_by_a_venue_whose_clock_is_off(
    tmp_path: Path, case: str, skew_range_ms: tuple[int, int], state: str
) -> None:
    # Drawn here, not in the test's id: every worker of a parallel run collects the same tests.
    skew_ms = RNG.randint(*skew_range_ms)
    print(f"seed {SEED}: {case}: the venue's clock is off by {skew_ms} ms")

    async def scenario() -> dict[str, object]:
        truth = tmp_path / "ground-truth.jsonl"
        mock = await start_mock(
            seed=1,
            ground_truth_path=str(truth),
            clock=lambda: time.time_ns() + skew_ms * MS,
        )
        try:
            settings = Settings(
                namespace="tc",
                instance="trader-clock-test",
                binance_ws_api_url=mock.ws_api_url,
                binance_api_key=Secret("mock-key"),
                binance_api_secret=Secret("mock-secret"),
                health_interval_s=0.1,
            )
            redis = fakeredis.FakeAsyncRedis()
            partition = next(
                p for p, symbols in settings.partitions().items() if "ETHUSDT" in symbols
            )
            signal = make_signal()
            await seed_market(redis, settings, "ETHUSDT", signal.price)
            await redis.xadd(settings.keys.signals(partition), signal.to_fields())
            async with stage_running(run, settings, redis=redis):
                orders = settings.keys.orders("binance")
                try:
                    events = await wait_for_events(redis, orders, "ack", 1)
                except AssertionError:
                    got = [decode_fields(f) for _, f in await redis.xrange(orders)]
                    raise AssertionError(f"no ack: {got}") from None
                health_key = settings.keys.health("trader", settings.instance)

                async def estimated() -> dict[str, object] | None:
                    health = orjson.loads(await redis.get(health_key) or b"{}")
                    return health if "venue_clock_offset_ms" in health else None

                # The next health record after the order carries the estimate.
                health = await until(estimated, timeout_s=30, what="the venue clock estimate")
        finally:
            await mock.close()
        assert next(e for e in events if e["event"] == "ack")["status"] != "REJECTED"
        cid = client_order_id_for(signal.signal_id)
        placed = [o for o in read_ground_truth(truth).orders() if o["client_order_id"] == cid]
        assert len(placed) == 1 and placed[0]["status"] != "REJECTED", placed
        return dict(health)

    health = asyncio.run(scenario())
    offset = health["venue_clock_offset_ms"]
    uncertainty = health["venue_clock_uncertainty_ms"]
    assert isinstance(offset, float) and isinstance(uncertainty, float), health
    assert abs(offset - skew_ms) <= uncertainty + 2, health  # + the wall clock's own steps
    assert health["venue_clock_state"] == state, health
    assert health["venue_clock_samples"] >= 3
