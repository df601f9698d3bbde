"""Replacing a working order at the Alpaca mock: ``PATCH`` in one step, else cancel then place.

A resting LIMIT buy replaced by a LIMIT with a new price and quantity goes out as ``PATCH
/v2/orders/{id}`` under the new signal's client order id: Alpaca ends the old order
(``replaced``) and works the new one. That one, replaced by a MARKET order (a type ``PATCH``
cannot change), is cancelled first, then the market order is placed. The trader follows all
three to their end (reconciliation here, no ingestor) and its position equals the venue's fills.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.integration.test_trader_alpaca import (
    alpaca_mock,
    make_settings,
    make_signal,
    order_events,
    placed,
    signalled,
)
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.shell import run

CENT = Decimal("0.01")


def _signal(name: str, **fields: Any) -> Signal:
    base = {"side": "buy", "qty": "1", "strategy": "grid", "order_type": "LIMIT"}
    return make_signal(f"rep:{name}", **(base | fields))


def test_a_limit_is_replaced_in_one_step_and_another_type_cancelled_first(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await alpaca_mock(truth)
        try:
            assert mock.alpaca is not None
            settings = make_settings(mock, price_band_bps="10000", max_position="10",
                                     reconcile_every_s=0.2)  # fmt: skip
            last = Decimal(mock.alpaca.sim.last_price("FAKEPACA"))
            print(f"FAKEPACA at {last} when the signals were made")
            old = _signal("old", price=str((last * Decimal("0.80")).quantize(CENT)))
            new = _signal("new", qty="2", price=str((last * Decimal("0.85")).quantize(CENT)),
                          replaces=old.signal_id)  # fmt: skip
            market = _signal("market", order_type="MARKET", price="",
                             replaces=client_order_id_for(new.signal_id))  # fmt: skip
            cid = {s.signal_id.split(":")[1]: client_order_id_for(s.signal_id)
                   for s in (old, new, market)}  # fmt: skip
            redis = await signalled(settings, old, new, market)
            async with stage_running(run, settings, redis=redis):

                async def settled() -> bool:
                    acks = {e.get("client_order_id") for e in await order_events(redis, settings)
                            if e["event"] == "ack"}  # fmt: skip
                    working = await redis.scard(settings.keys.working_orders("alpaca"))
                    return set(cid.values()) <= acks and working == 0

                await until(settled, 20, what="three orders answered and every one ended")
                positions = decode_fields(await redis.hgetall(settings.keys.positions("alpaca")))
            events = await order_events(redis, settings)
        finally:
            await mock.close()

        broker = mock.alpaca.broker
        venue = {n: broker.by_client_order_id(c) for n, c in cid.items()}
        assert (venue["old"].status, venue["new"].status, venue["market"].status) == (
            "replaced", "canceled", "filled"
        )  # fmt: skip
        assert venue["new"].replaces == venue["old"].id and venue["old"].replaced_by == (
            venue["new"].id
        )
        assert venue["new"].qty == 2 and venue["market"].replaces is None
        (patched,) = placed(truth, cid["new"])
        assert patched["replaces"] == venue["old"].id
        assert [len(placed(truth, c)) for c in cid.values()] == [1, 1, 1]
        # The market order reached the venue only after the order it replaced was cancelled.
        assert venue["new"].canceled_ns is not None
        assert venue["new"].canceled_ns <= venue["market"].created_ns
        last_state = {e["client_order_id"]: e.get("status") for e in events if e.get("status")}
        assert last_state[cid["old"]] == "CANCELED"  # Alpaca's "replaced"
        signed = sum((o.filled_qty for o in venue.values()), Decimal(0))  # every one a buy
        assert Decimal(positions["FAKEPACA"]) == signed == Decimal(1)

    asyncio.run(scenario())
