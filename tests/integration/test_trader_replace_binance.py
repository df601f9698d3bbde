"""A signal that replaces a working order, at the Binance mock: cancel confirmed, then place.

A resting LIMIT buy is replaced by a new price: the venue shows the old order CANCELED before
the new one arrived, and the new one working; the replacing signal read twice still makes one
order. A replace that names no order, an order of another strategy, or an order that already
filled is refused before anything is sent (recorded ``rejected`` at stage ``replace`` and
dead-lettered with the reason). Positions equal the venue's fills.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis

from tests.builders import build_signal
from tests.integration.test_trader_mock import eth_streams, mock_settings
from tests.integration.test_trader_quote_stop_binance import dead_letter_reasons
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run

CENT = Decimal("0.01")


def _signal(name: str, **fields: Any) -> Signal:
    base = {"signal_id": f"rep:ETHUSDT:{name}", "symbol": "ETHUSDT", "side": "buy",
            "qty": "0.01", "strategy": "grid", "order_type": "LIMIT"}  # fmt: skip
    return build_signal(**(base | fields))


def test_a_replacing_signal_cancels_first_then_places_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await start_mock(seed=7, ground_truth_path=str(truth))
        try:
            settings = mock_settings(mock, namespace="tr", instance="trader-replace",
                                     price_band_bps="10000", max_position="10")  # fmt: skip
            redis = fakeredis.FakeAsyncRedis()
            signals, orders = eth_streams(settings)
            last = Decimal(mock.market.last_price("ETHUSDT"))
            print(f"ETHUSDT at {last} when the signals were made")
            far = str((last * Decimal("0.80")).quantize(CENT))
            nearer = str((last * Decimal("0.85")).quantize(CENT))
            old = _signal("old", price=far)
            new = _signal("new", price=nearer, replaces=old.signal_id)
            nothing = _signal("nothing", price=nearer, replaces="rep:ETHUSDT:none")
            other = _signal("other", price=nearer, strategy="momentum",
                            replaces=client_order_id_for(new.signal_id))  # fmt: skip
            taken = _signal("taken", order_type="MARKET", price="")
            late = _signal("late", price=nearer, replaces=taken.signal_id)
            cid = {s.signal_id.rsplit(":", 1)[1]: client_order_id_for(s.signal_id)
                   for s in (old, new, nothing, other, taken, late)}  # fmt: skip
            await seed_market(redis, settings, "ETHUSDT", str(last))

            async def entries() -> list[dict[str, str]]:
                return [decode_fields(f) for _, f in await redis.xrange(orders)]

            async def answered(*names: str) -> None:
                async def done() -> bool:
                    seen = {e.get("client_order_id") for e in await entries()
                            if e["event"] in ("ack", "rejected")}  # fmt: skip
                    return {cid[n] for n in names} <= seen

                await until(done, 10, what=f"answers for {names}")

            async with stage_running(run, settings, redis=redis):
                for signal in (old, taken):
                    await redis.xadd(signals, signal.to_fields())
                await answered("old", "taken")
                for signal in (new, new, nothing, other, late):  # ``new`` read twice
                    await redis.xadd(signals, signal.to_fields())
                await answered("new", "nothing", "other", "late")
                positions = decode_fields(await redis.hgetall(settings.keys.positions("binance")))
            events = await entries()
            letters = await dead_letter_reasons(redis, settings, "binance")
        finally:
            await mock.close()

        venue = {o.client_order_id: o for o in mock.engine.orders}
        placed = [o["client_order_id"] for o in read_ground_truth(truth).orders()]
        assert sorted(placed) == sorted([cid["old"], cid["taken"], cid["new"]]), placed
        assert venue[cid["old"]].status == "CANCELED"
        assert venue[cid["new"]].status == "NEW" and venue[cid["new"]].price == Decimal(nearer)
        # Cancelled (and confirmed so) before the new order reached the venue.
        assert venue[cid["old"]].update_time_ms <= venue[cid["new"]].time_ms
        intent = next(
            e for e in events if e["event"] == "intent" and e["client_order_id"] == cid["new"]
        )
        assert (intent["replaces"], intent["strategy"]) == (cid["old"], "grid")
        assert letters == {
            cid["nothing"]: "replaces rep:ETHUSDT:none: no order of that id here",
            cid["other"]: f"replaces {cid['new']}: that order is strategy grid's, not momentum's",
            cid["late"]: f"replaces {taken.signal_id}: that order filled before it could be "
            "replaced; nothing placed",
        }
        rejected = {e["client_order_id"]: e["stage"] for e in events if e["event"] == "rejected"}
        assert rejected == {cid["nothing"]: "replace", cid["other"]: "replace",
                            cid["late"]: "replace"}  # fmt: skip
        signed = sum((o.executed_qty for o in venue.values()), Decimal(0))  # every one a buy
        assert Decimal(positions["ETHUSDT"]) == signed == Decimal("0.01")

    asyncio.run(scenario())
