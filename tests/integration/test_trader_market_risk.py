"""The risk check prices orders from the market the trader reads, never from the signal.

Forged or off-market signals (a made-up price, a symbol without a recent trade or quote) are
refused with a reason and never reach the venue; a signal priced near the market is placed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    make_settings,
    make_signal,
    seed_market,
    signal_stream,
)
from tests.waits import until
from tickpipe.common.schema import Quote


async def _settled(h: Harness) -> bool:
    if not (await h.events_named("rejected") or await h.events_named("ack")):
        return False
    return await h.signals_read()


async def _run_one(h: Harness, signal: Any) -> list[dict[str, str]]:
    await h.redis.xadd(signal_stream(h.settings), signal.to_fields())
    h.start()
    await until(lambda: _settled(h))
    await h.finish()
    return await h.events_named("rejected")


def test_a_forged_signal_with_a_made_up_price_does_not_reach_the_venue() -> None:
    """``price "1"`` on a BUY of 0.5 BTC: priced at the market it is far past the limits."""

    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, make_settings(max_notional="1000", max_position="5", order_qty="0.1"))
        await seed_market(h.redis, h.settings, "BTCUSDT", "61800")
        rejected = await _run_one(h, make_signal(1, qty="0.5", price="1"))
        assert venue.place_calls == []
        assert len(rejected) == 1 and rejected[0]["stage"] == "risk"
        assert rejected[0]["reason"].startswith("price band: signal price 1 is"), rejected

    asyncio.run(scenario())


def test_a_market_order_is_valued_at_the_market_not_at_the_signal_price() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, make_settings(max_notional="1000", max_position="5", order_qty="0.1"))
        await seed_market(h.redis, h.settings, "BTCUSDT", "61800")
        rejected = await _run_one(h, make_signal(1, qty="0.5", price=""))  # no price at all
        assert venue.place_calls == []
        assert rejected[0]["reason"] == "notional limit: 30900 exceeds 1000", rejected

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("price", "placed"),
    [("62300", True), ("62500", False)],  # 81 and 113 bps above the market
    ids=["inside", "outside"],
)
def test_the_band_lets_near_prices_reach_the_venue_and_refuses_far_ones(
    price: str, placed: bool
) -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, make_settings(price_band_bps="100"))
        await seed_market(h.redis, h.settings, "BTCUSDT", "61800")
        rejected = await _run_one(h, make_signal(1, price=price))
        assert len(venue.place_calls) == int(placed)
        if placed:
            assert rejected == []
        else:
            assert "outside the band of 100 bps" in rejected[0]["reason"], rejected

    asyncio.run(scenario())


@pytest.mark.parametrize("age_s", [None, 60.0], ids=["no-market", "stale-market"])
def test_without_a_fresh_market_price_the_order_is_refused(age_s: float | None) -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, make_settings(max_price_age_s=10.0))
        if age_s is not None:  # the last trade was received a minute ago
            then = time.time_ns() - int(age_s * 1e9)
            partition = next(iter(h.settings.partitions()))
            quote = Quote("binance", "BTCUSDT", "61800", "1", "61801", "1", "1", then, then)
            await h.redis.xadd(h.settings.keys.quotes(partition), quote.to_fields())
        rejected = await _run_one(h, make_signal(1))
        assert venue.place_calls == []
        reason = rejected[0]["reason"]
        if age_s is None:
            assert reason == "no market price for BTCUSDT: no trade or quote seen", reason
        else:
            assert reason.startswith("no market price for BTCUSDT: the last one is 6"), reason
            assert reason.endswith("s old (limit 10 s)"), reason

    asyncio.run(scenario())
