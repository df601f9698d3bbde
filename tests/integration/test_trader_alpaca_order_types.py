"""Order types per signal at the Alpaca mock: what Alpaca has is sent as asked, the rest refused.

A post-only signal has no Alpaca equivalent: it is refused before anything is sent, recorded
``rejected`` at stage ``order`` and dead-lettered with the reason. A stock LIMIT FOK order is
sent with ``time_in_force`` ``fok`` and a LIMIT IOC one with ``ioc``. The mock publishes no
assets endpoint, so the trader has no filters for the symbol, says so, and sends unfiltered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

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
from tickpipe.common.schema import decode_fields
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.shell import run


def test_each_order_type_is_sent_as_alpaca_has_it_or_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await alpaca_mock(truth)
        try:
            settings = make_settings(mock, price_band_bps="10000")
            maker = make_signal("t:maker", order_type="LIMIT", post_only=True, price="90")
            fok = make_signal("t:fok", order_type="LIMIT", time_in_force="FOK", price="90")
            ioc = make_signal("t:ioc", order_type="LIMIT", time_in_force="IOC", price="90")
            redis = await signalled(settings, maker, fok, ioc)
            async with stage_running(run, settings, redis=redis):
                cids = {s.signal_id: client_order_id_for(s.signal_id) for s in (maker, fok, ioc)}

                async def settled() -> bool:
                    events = await order_events(redis, settings)
                    done = {
                        e["client_order_id"] for e in events if e["event"] in ("ack", "rejected")
                    }
                    return set(cids.values()) <= done

                await until(settled, what="an answer for every signal")
            dead = settings.keys.trader_dead_letters("alpaca")
            letters = [decode_fields(f) for _, f in await redis.xrange(dead)]
            events = await order_events(redis, settings)
        finally:
            await mock.close()
        assert placed(truth, cids["t:maker"]) == []  # never sent
        (letter,) = [e for e in letters if e["client_order_id"] == cids["t:maker"]]
        assert letter["reason"] == (
            "order type refused: alpaca: no post-only orders (Binance's LIMIT_MAKER has no "
            "Alpaca equivalent)"
        )
        rejected = [e for e in events if e["event"] == "rejected"]
        assert [(e["client_order_id"], e["stage"]) for e in rejected] == [
            (cids["t:maker"], "order")
        ]
        (sent_fok,) = placed(truth, cids["t:fok"])
        (sent_ioc,) = placed(truth, cids["t:ioc"])
        assert sent_fok["time_in_force"] == "fok" and sent_ioc["time_in_force"] == "ioc"
        assert sent_fok["accepted"] and sent_ioc["accepted"]
        # The mock serves /v2/assets as the venue does: FAKEPACA's filters were loaded, not missed.
        said = [r.getMessage() for r in caplog.records if "instrument filters" in r.getMessage()]
        assert said == []
        assert [e["symbol"] for e in events if e["event"] == "instruments"] == ["FAKEPACA"]

    asyncio.run(scenario())
