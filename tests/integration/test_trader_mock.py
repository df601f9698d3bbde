"""Integration test of the trader against the in-process mock exchange: one signal, one order."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis

from tests.builders import build_signal
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.settings import Secret, Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run


def make_signal() -> Signal:
    return build_signal(
        signal_id="threshold:ETHUSDT:mock-test", symbol="ETHUSDT", qty="0.01", price="3000"
    )


def mock_settings(mock: MockExchange, **values: Any) -> Settings:
    """Return settings of a trader that trades at ``mock`` with the mock's test key."""
    return Settings(
        binance_ws_api_url=mock.ws_api_url,
        binance_rest_url=mock.rest_url,
        binance_api_key=Secret("mock-key"),
        binance_api_secret=Secret("mock-secret"),
        **values,
    )


def eth_streams(settings: Settings) -> tuple[str, str]:
    """Return the signals stream that carries ETHUSDT and the venue's orders stream."""
    partition = next(p for p, symbols in settings.partitions().items() if "ETHUSDT" in symbols)
    return settings.keys.signals(partition), settings.keys.orders("binance")


async def wait_for_events(redis: Any, stream: str, event: str, n: int) -> list[dict[str, str]]:
    """Wait until ``stream`` holds ``n`` ``event`` entries; return all its entries."""

    async def found() -> list[dict[str, str]]:
        events = [decode_fields(f) for _, f in await redis.xrange(stream)]
        return events if sum(e["event"] == event for e in events) >= n else []

    events: list[dict[str, str]] = await until(found, 8, what=f"{n} {event!r} in {stream}")
    return events


async def wait_idle(redis: Any, stream: str) -> None:
    """Wait until the trader group has read and acknowledged every entry of ``stream``."""

    async def idle() -> bool:
        groups = await redis.xinfo_groups(stream)
        last = (await redis.xrevrange(stream, count=1))[0][0]
        return bool(groups and groups[0]["pending"] == 0 and groups[0]["last-delivered-id"] == last)

    await until(idle, 8, what=f"the trader to handle every entry of {stream}")


def test_signal_places_exactly_one_order_at_the_mock_even_when_replayed(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "ground-truth.jsonl"
        mock = await start_mock(seed=1, ground_truth_path=str(truth))
        try:
            settings = mock_settings(mock, namespace="tm", instance="trader-mock-test")
            redis = fakeredis.FakeAsyncRedis()
            signals, orders = eth_streams(settings)
            signal = make_signal()
            await seed_market(redis, settings, "ETHUSDT", signal.price)
            await redis.xadd(signals, signal.to_fields())

            async with stage_running(run, settings, redis=redis):
                events = await wait_for_events(redis, orders, "ack", 1)
            ack = next(e for e in events if e["event"] == "ack")
            assert ack["source"] == "place" and ack["order_id"] and ack["status"]

            # The same signal again, read by a fresh trader: its outcome is known, never resent.
            await seed_market(redis, settings, "ETHUSDT", signal.price)
            await redis.xadd(signals, signal.to_fields())
            async with stage_running(run, settings, redis=redis):
                await wait_idle(redis, signals)
            events = [decode_fields(f) for _, f in await redis.xrange(orders)]
            orders_events = [e["event"] for e in events if e["event"] != "instruments"]
            assert orders_events == ["intent", "ack"]  # the filters are on record too
        finally:
            await mock.close()

        cid = client_order_id_for(signal.signal_id)
        placed = [o for o in read_ground_truth(truth).orders() if o["client_order_id"] == cid]
        assert len(placed) == 1, placed
        assert placed[0]["symbol"] == "ETHUSDT" and placed[0]["side"] == "BUY"
        assert placed[0]["status"] != "REJECTED", placed[0]

    asyncio.run(scenario())


def test_limit_order_rests_at_the_mock_until_a_cancel_signal_and_restarts_reconcile(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        mock = await start_mock(seed=2, ground_truth_path=str(tmp_path / "truth.jsonl"))
        try:
            settings = mock_settings(
                mock,
                namespace="tl",
                instance="trader-limit-test",
                order_type="LIMIT",
                price_band_bps="10000",  # a buy far below the market, so it rests
            )
            redis = fakeredis.FakeAsyncRedis()
            signals, orders = eth_streams(settings)
            # Far below the market, yet inside the venue's PERCENT_PRICE_BY_SIDE (0.2x) and
            # NOTIONAL (5 USDT) filters, which refuse a 0.01 ETH buy at 1.00.
            resting = replace(make_signal(), price="1000.00", signal_id="threshold:ETHUSDT:limit")
            await seed_market(redis, settings, "ETHUSDT", "3000")
            await redis.xadd(signals, resting.to_fields())
            async with stage_running(run, settings, redis=redis):
                events = await wait_for_events(redis, orders, "ack", 1)
                ack = next(e for e in events if e["event"] == "ack")
                assert ack["status"] == "NEW"  # resting far below the market

            # A restart reconciles against openOrders.status: the open order matches, no news.
            async with stage_running(run, settings, redis=redis):
                cancel = replace(
                    make_signal(), action="cancel", qty="0", signal_id="rapid:ETHUSDT:1"
                )
                await redis.xadd(signals, cancel.to_fields())
                events = await wait_for_events(redis, orders, "canceled", 1)
        finally:
            await mock.close()
        canceled = next(e for e in events if e["event"] == "canceled")
        assert canceled["status"] == "CANCELED" and canceled["source"] == "cancel"
        assert not any(e["event"] == "discrepancy" for e in events), events
        assert await redis.scard(settings.keys.working_orders("binance")) == 0

    asyncio.run(scenario())
