"""The trader applies the venue's instrument filters and order types before anything is sent.

Against the in-process mock exchange: the filters come from its ``exchangeInfo`` (``LOT_SIZE``
step and minimum, ``PRICE_FILTER`` tick, ``orderTypes``), an order the venue would reject never
reaches it and is a dead letter naming the filter, and one that rounding makes valid is sent
rounded. The mock's ground truth says what it received.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import fakeredis

from tests.integration.test_trader_mock import eth_streams, make_signal, mock_settings, wait_idle
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run


async def _wait_acks(redis: Any, stream: str, cids: set[str]) -> list[dict[str, str]]:
    async def acked() -> list[dict[str, str]]:
        events = [decode_fields(f) for _, f in await redis.xrange(stream)]
        done = {e["client_order_id"] for e in events if e["event"] == "ack"}
        return events if cids <= done else []

    events: list[dict[str, str]] = await until(acked, 8, what=f"an ack for each of {cids}")
    return events


def test_orders_the_venue_would_reject_are_refused_before_sending(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "ground-truth.jsonl"
        mock = await start_mock(seed=3, ground_truth_path=str(truth))
        try:
            settings = mock_settings(
                mock, namespace="tf", instance="trader-filters-test", price_band_bps="10000"
            )
            redis = fakeredis.FakeAsyncRedis()
            signals, orders = eth_streams(settings)
            base = make_signal()
            tiny = replace(base, signal_id="f:tiny", qty="0.000004")  # LOT_SIZE minimum 0.00001
            odd = replace(base, signal_id="f:odd", qty="0.0022345678")  # step 0.00001: rounded
            maker = replace(base, signal_id="f:maker", order_type="LIMIT", post_only=True,
                            price="2000.004")  # fmt: skip  # LIMIT_MAKER, below the market
            ioc = replace(base, signal_id="f:ioc", order_type="LIMIT", time_in_force="IOC",
                          price="1000.009")  # fmt: skip  # tick 0.01: a buy rounds down
            await seed_market(redis, settings, "ETHUSDT", base.price)
            for signal in (tiny, odd, maker, ioc):
                await redis.xadd(signals, signal.to_fields())
            async with stage_running(run, settings, redis=redis):
                cid = {
                    s.signal_id: client_order_id_for(s.signal_id) for s in (tiny, odd, maker, ioc)
                }
                await _wait_acks(redis, orders, {cid["f:odd"], cid["f:ioc"], cid["f:maker"]})
                await wait_idle(redis, signals)
            dead = settings.keys.trader_dead_letters("binance")
            letters = {
                e["client_order_id"]: e
                for e in (decode_fields(f) for _, f in await redis.xrange(dead))
            }
            events = [decode_fields(f) for _, f in await redis.xrange(orders)]
        finally:
            await mock.close()

        placed = {o["client_order_id"]: o for o in read_ground_truth(truth).orders()}
        # Refused here, never sent: the dead letter names the filter.
        assert cid["f:tiny"] not in placed, placed
        assert "filter LOT_SIZE" in letters[cid["f:tiny"]]["reason"], letters
        tiny_reason = letters[cid["f:tiny"]]["reason"]
        assert "0.000004 (after rounding 0) below the minimum 0.00001" in tiny_reason
        assert cid["f:maker"] not in letters, letters  # the venue lists LIMIT_MAKER
        # The filters it applied are on record for the strategies that follow them.
        (told,) = [e for e in events if e["event"] == "instruments" and e["symbol"] == "ETHUSDT"]
        assert (told["tick_size"], told["step_size"]) == ("0.01000000", "0.00001000")
        intents = {e["client_order_id"]: e for e in events if e["event"] == "intent"}
        assert (
            intents[cid["f:odd"]]["qty"] == "0.00223"
        )  # 0.0022345678 down to the step (6.69 USDT: above NOTIONAL)
        assert intents[cid["f:ioc"]]["price"] == "1000"  # 1000.009 down to the tick (a buy)
        rejected = {e["client_order_id"]: e for e in events if e["event"] == "rejected"}
        assert rejected[cid["f:tiny"]]["stage"] == "order"
        # Rounded the safe way and accepted by the venue.
        assert placed[cid["f:odd"]]["status"] != "REJECTED", placed[cid["f:odd"]]
        assert placed[cid["f:ioc"]]["status"] != "REJECTED", placed[cid["f:ioc"]]
        assert placed[cid["f:odd"]]["qty"] == "0.00223", placed
        # IOC far below the market: expired at once (a GTC order would rest as NEW).
        assert placed[cid["f:ioc"]]["status"] == "EXPIRED", placed
        # Post-only rests as LIMIT_MAKER at the tick-rounded price (2000.004 down to 2000).
        assert intents[cid["f:maker"]]["price"] == "2000"
        assert placed[cid["f:maker"]]["status"] == "NEW", placed[cid["f:maker"]]
        assert len(placed) == 3

    asyncio.run(scenario())
