"""Quote-quantity and stop orders per signal at the Alpaca mock, followed to their end state.

A MARKET signal with ``quote_qty`` goes out as ``notional`` (no ``qty``) and fills at once; a
STOP signal goes out as type ``stop`` and a STOP_LIMIT one as ``stop_limit``, with
``stop_price``: they rest untriggered until the mock's market crashes through their stop, then
fill. The trader follows them by reconciliation (no ingestor here), and its positions must equal
the venue's fills. What Alpaca does not have (a stop-market order on crypto, a stop order IOC)
is refused before anything is sent, dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from tests.integration.test_trader_alpaca import (
    alpaca_mock,
    make_settings,
    make_signal,
    order_events,
    placed,
    signalled,
)
from tests.integration.test_trader_quote_stop_binance import dead_letter_reasons
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.schema import decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.shell import run

CENT = Decimal("0.01")


def test_quote_quantity_and_stop_orders_reach_their_end_at_the_alpaca_mock(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await alpaca_mock(truth)
        try:
            assert mock.alpaca is not None
            settings = make_settings(
                mock,
                price_band_bps="10000",
                max_position="10",
                reconcile_every_s=0.2,  # the only way the trader hears of a later fill here
            )
            last = Decimal(mock.alpaca.sim.last_price("FAKEPACA"))
            print(f"FAKEPACA at {last} when the signals were made")

            def price(factor: str) -> str:
                return str((last * Decimal(factor)).quantize(CENT))

            quote = make_signal("k:quote", side="buy", qty="", price="", quote_qty="500",
                                order_type="MARKET")  # fmt: skip
            stop = make_signal("k:stop", side="sell", qty="1", price="", order_type="STOP",
                               stop_price=price("0.98"))  # fmt: skip
            stop_limit = make_signal("k:stoplimit", side="sell", qty="2", order_type="STOP_LIMIT",
                                     stop_price=price("0.97"), price=price("0.90"))  # fmt: skip
            ioc = make_signal("k:ioc", side="sell", qty="1", order_type="STOP_LIMIT",
                              time_in_force="IOC", stop_price=price("0.97"),
                              price=price("0.90"))  # fmt: skip
            crypto = make_signal("k:crypto", symbol="BTC/USD", side="sell", qty="0.01",
                                 price="", order_type="STOP", stop_price="1")  # fmt: skip
            kinds = (quote, stop, stop_limit, ioc, crypto)
            cid = {s.signal_id.split(":")[1]: client_order_id_for(s.signal_id) for s in kinds}
            redis = await signalled(settings, *kinds)
            async with stage_running(run, settings, redis=redis):

                async def answered() -> bool:
                    seen = {(e.get("client_order_id"), e["event"])
                            for e in await order_events(redis, settings)}  # fmt: skip
                    acks = {(cid[n], "ack") for n in ("quote", "stop", "stoplimit")}
                    return acks | {(cid["ioc"], "rejected"), (cid["crypto"], "rejected")} <= seen

                await until(answered, 10, what="an answer for every signal")
                broker = mock.alpaca.broker
                resting = broker.by_client_order_id(cid["stop"])
                assert resting.status == "new" and not resting.triggered
                mock.alpaca.sim.schedule(
                    {"name": "crash", "symbol": "FAKEPACA", "duration": 2, "pct": 10},
                    mock.alpaca.clock(),
                )

                async def settled() -> bool:
                    return await redis.scard(settings.keys.working_orders("alpaca")) == 0

                await until(settled, 20, what="both stop orders triggered, filled and followed")
                positions = decode_fields(await redis.hgetall(settings.keys.positions("alpaca")))
            events = await order_events(redis, settings)
            letters = await dead_letter_reasons(redis, settings, "alpaca")
        finally:
            await mock.close()

        venue = {n: broker.by_client_order_id(cid[n]) for n in ("quote", "stop", "stoplimit")}
        # Sent as Alpaca names them, once each; the refused ones never.
        assert [len(placed(truth, cid[n])) for n in cid] == [1, 1, 1, 0, 0]
        (sent_quote,) = placed(truth, cid["quote"])
        assert (sent_quote["notional"], sent_quote["qty"], sent_quote["type"]) == (
            "500",
            None,
            "market",
        )
        (sent_stop,) = placed(truth, cid["stop"])
        assert sent_stop["type"] == "stop" and Decimal(sent_stop["stop_price"]) == Decimal(
            stop.stop_price
        )
        (sent_limit,) = placed(truth, cid["stoplimit"])
        assert sent_limit["type"] == "stop_limit" and sent_limit["limit_price"] is not None
        assert all(o.status == "filled" for o in venue.values()), venue
        # Positions equal the venue's fills.
        signed = sum(
            (o.filled_qty if o.side == "buy" else -o.filled_qty for o in venue.values()),
            Decimal(0),
        )
        assert Decimal(positions["FAKEPACA"]) == signed, (positions, signed)
        intents = {e["client_order_id"]: e for e in events if e["event"] == "intent"}
        assert (intents[cid["quote"]]["quote_qty"], intents[cid["quote"]]["qty"]) == ("500", "")
        assert letters[cid["ioc"]] == (
            "order type refused: alpaca: a stop order rests until triggered: GTC, not IOC"
        )
        assert letters[cid["crypto"]] == (
            "order type refused: alpaca: crypto has no stop-market orders, use STOP_LIMIT (BTC/USD)"
        )

    asyncio.run(scenario())
