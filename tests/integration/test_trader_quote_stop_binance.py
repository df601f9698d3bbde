"""Quote-quantity and stop orders per signal at the Binance mock, followed to their end state.

A MARKET signal with ``quote_qty`` goes out as ``quoteOrderQty`` (no ``quantity``) and fills
at once; a STOP signal goes out as ``STOP_LOSS``, a STOP_LIMIT one as ``STOP_LOSS_LIMIT`` and a
TAKE_PROFIT buy as ``TAKE_PROFIT``, all with ``stopPrice``: they rest untriggered until the
mock's market crashes through their stop, then fill. The trader follows them by
reconciliation (no ingestor here), and its positions must equal the venue's fills. A STOP
signal with a time in force is refused before anything is sent, dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis

from tests.builders import build_signal
from tests.integration.test_trader_mock import eth_streams, mock_settings
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run

CENT = Decimal("0.01")


async def dead_letter_reasons(redis: Any, settings: Settings, venue: str) -> dict[str, str]:
    """Return the reason of each of the trader's dead letters, by client order id."""
    stream = settings.keys.trader_dead_letters(venue)
    letters = (decode_fields(f) for _, f in await redis.xrange(stream))
    return {e["client_order_id"]: e["reason"] for e in letters}


def _signal(name: str, **fields: Any) -> Signal:
    base = {"signal_id": f"kinds:ETHUSDT:{name}", "symbol": "ETHUSDT", "price": ""}
    return build_signal(**(base | fields))


def test_quote_quantity_and_stop_orders_reach_their_end_at_the_binance_mock(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await start_mock(seed=5, ground_truth_path=str(truth))
        try:
            settings = mock_settings(
                mock,
                namespace="tq",
                instance="trader-quote-stop",
                price_band_bps="10000",
                max_position="10",
                reconcile_every_s=0.2,  # the only way the trader hears of a later fill here
            )
            redis = fakeredis.FakeAsyncRedis()
            signals, orders = eth_streams(settings)
            last = Decimal(mock.market.last_price("ETHUSDT"))
            print(f"ETHUSDT at {last} when the signals were made")
            quote = _signal("quote", side="buy", qty="", order_type="MARKET", quote_qty="60")
            stop = _signal("stop", side="sell", qty="0.01", order_type="STOP",
                           stop_price=str((last * Decimal("0.98")).quantize(CENT)))  # fmt: skip
            stop_limit = _signal(
                "stoplimit", side="sell", qty="0.02", order_type="STOP_LIMIT",
                stop_price=str((last * Decimal("0.97")).quantize(CENT)),
                price=str((last * Decimal("0.90")).quantize(CENT)),
            )  # fmt: skip
            take_profit = _signal(
                "takeprofit", side="buy", qty="0.01", order_type="TAKE_PROFIT",
                stop_price=str((last * Decimal("0.98")).quantize(CENT)),
            )  # fmt: skip
            wrong = _signal("wrong", side="sell", qty="0.01", order_type="STOP",
                            time_in_force="IOC", stop_price="1")  # fmt: skip
            kinds = (quote, stop, stop_limit, take_profit, wrong)
            cid = {s.signal_id.rsplit(":", 1)[1]: client_order_id_for(s.signal_id) for s in kinds}
            await seed_market(redis, settings, "ETHUSDT", str(last))
            for signal in kinds:
                await redis.xadd(signals, signal.to_fields())

            async def entries() -> list[dict[str, str]]:
                return [decode_fields(f) for _, f in await redis.xrange(orders)]

            async with stage_running(run, settings, redis=redis):

                async def answered() -> bool:
                    seen = {(e.get("client_order_id"), e["event"]) for e in await entries()}
                    acks = {(cid[n], "ack") for n in ("quote", "stop", "stoplimit", "takeprofit")}
                    return acks | {(cid["wrong"], "rejected")} <= seen

                await until(answered, 10, what="an answer for every signal")
                resting = {o.client_order_id: o for o in mock.engine.orders}
                assert resting[cid["stop"]].status == "NEW", resting[cid["stop"]]
                assert not resting[cid["stop"]].working  # untriggered
                mock.schedule({"name": "crash", "symbol": "ETHUSDT", "duration": 2, "pct": 10})

                async def settled() -> bool:
                    return await redis.scard(settings.keys.working_orders("binance")) == 0

                await until(settled, 20, what="the stop orders triggered, filled and followed")
                positions = decode_fields(await redis.hgetall(settings.keys.positions("binance")))
            events = await entries()
            letters = await dead_letter_reasons(redis, settings, "binance")
        finally:
            await mock.close()

        venue = {o.client_order_id: o for o in mock.engine.orders}
        placed = {o["client_order_id"]: o for o in read_ground_truth(truth).orders()}
        # Sent as the venue names them, at most once each; the refused one never.
        assert set(placed) == {cid[n] for n in ("quote", "stop", "stoplimit", "takeprofit")}, placed
        assert venue[cid["quote"]].type == "MARKET"
        assert venue[cid["quote"]].orig_quote_qty == Decimal("60")
        assert venue[cid["stop"]].type == "STOP_LOSS"
        assert venue[cid["stoplimit"]].type == "STOP_LOSS_LIMIT"
        assert venue[cid["stoplimit"]].price == Decimal(stop_limit.price)
        assert venue[cid["takeprofit"]].type == "TAKE_PROFIT"  # a buy: triggered by the fall
        assert all(venue[c].status == "FILLED" for c in placed), {c: venue[c] for c in venue}
        # Positions equal the venue's fills.
        signed = sum(
            (o.executed_qty if o.side == "BUY" else -o.executed_qty for o in venue.values()),
            Decimal(0),
        )
        assert Decimal(positions["ETHUSDT"]) == signed, (positions, signed)
        assert venue[cid["quote"]].executed_qty > 0
        intents = {e["client_order_id"]: e for e in events if e["event"] == "intent"}
        assert (intents[cid["quote"]]["quote_qty"], intents[cid["quote"]]["qty"]) == ("60", "")
        assert Decimal(intents[cid["stop"]]["stop_price"]) == Decimal(stop.stop_price)
        assert letters[cid["wrong"]] == (
            "order type refused: binance: a STOP order takes no time_in_force (got IOC)"
        )

    asyncio.run(scenario())
