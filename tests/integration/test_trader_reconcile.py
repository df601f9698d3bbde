"""Integration tests of reconciliation, positions and profit on fakeredis with a fake venue."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from tests.integration.test_trader_shell import (
    FakeVenue,
    Harness,
    make_settings,
    make_signal,
    owned_ledger,
)
from tests.waits import until
from tickpipe.common.errors import AmbiguousOutcome
from tickpipe.common.schema import OrderIntent, RawFrame, Trade, decode_fields
from tickpipe.common.units import client_order_id_for


async def _position(h: Harness) -> dict[str, str]:
    return decode_fields(await h.redis.hgetall(h.settings.keys.positions("binance")))


def test_start_reconciles_fills_missed_while_down_orphans_and_unknown_orders() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue, make_settings(order_type="LIMIT"))
        await h.start_acked(make_signal(1))
        await h.finish()
        cid = client_order_id_for(make_signal(1).signal_id)
        venue.fill(cid, "0.001", "61.8")  # filled while the trader was down
        # An intent recorded by a run that died before sending it: the venue never got it, and
        # it is too old to place now (older than max_price_age_s).
        ledger = await owned_ledger(h.redis, h.settings)
        orphan = OrderIntent("tp-orphan", "sig-x", "binance", "BTCUSDT", "buy", "MARKET",
                             "0.001", None, 1, time.time_ns() - 20 * 10**9)  # fmt: skip
        assert await ledger.record_intent(orphan) is None
        venue.orders["someone-elses"] = {"clientOrderId": "someone-elses", "symbol": "BTCUSDT",
                                         "status": "NEW", "executedQty": "0"}  # fmt: skip
        # An intent settled here as never placed, yet open at the venue.
        settled = OrderIntent("tp-settled", "sig-y", "binance", "BTCUSDT", "buy", "MARKET",
                              "0.001", None, 1, time.time_ns())  # fmt: skip
        assert await ledger.record_intent(settled) is None
        await ledger.record(settled, "not_found", {"reason": "test"}, settle=True)
        venue.orders["tp-settled"] = {
            **venue.orders["someone-elses"],
            "clientOrderId": "tp-settled",
        }
        await ledger.lease.release()  # the trader started now takes the account

        h.start()
        await until(lambda: h.has_event("discrepancy", 4))
        await h.finish()
        kinds = {e["client_order_id"]: e["kind"] for e in await h.events_named("discrepancy")}
        assert kinds == {
            cid: "state_changed",
            "tp-orphan": "orphan_intent",
            "someone-elses": "unknown_open_order",
            "tp-settled": "settled_here_open_at_venue",
        }
        assert (await h.events_named("not_found"))[1]["client_order_id"] == "tp-orphan"
        assert (await _position(h))["BTCUSDT"] == "0.001"
        assert await h.redis.scard(h.settings.keys.working_orders("binance")) == 0
        assert len(venue.place_calls) == 1 and venue.open_orders_calls >= 1

    asyncio.run(scenario())


def test_a_private_stream_reconnect_or_venue_reconnect_triggers_reconciliation() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.lists_open_orders = False  # an older venue: every working order is queried
        h = Harness(venue, make_settings(order_type="LIMIT"))
        await h.start_acked(make_signal(1), make_signal(2))
        first, second = (client_order_id_for(make_signal(n).signal_id) for n in (1, 2))
        venue.fill(first, "0.0004", "24.72")  # missed while the private stream was down
        marker = RawFrame("marker", "binance", "user/x.2", 0, time.time_ns(),
                          '{"event":"connect","conn":"user/x.2"}', "user")  # fmt: skip
        queried = len(venue.status_calls)
        await h.redis.xadd(h.settings.keys.private_raw("binance"), marker.to_fields())
        await until(lambda: _position_is(h, "0.0004"))
        await until(lambda: len(venue.status_calls) >= queried + 2)  # both looked up

        venue.fill(second, "0.001", "61.8")
        venue.connects = 2  # the trader's own WebSocket API connection came back
        await until(lambda: _position_is(h, "0.0014"))
        await h.finish()
        sources = {e["source"] for e in await h.events_named("ack")}
        assert "status:reconcile:private-reconnect" in sources
        assert "status:reconcile:venue-reconnect" in sources
        assert len(venue.place_calls) == 2

    asyncio.run(scenario())


async def _position_is(h: Harness, qty: str) -> bool:
    return (await _position(h)).get("BTCUSDT") == qty


def test_positions_carry_average_cost_realised_and_unrealised_profit() -> None:
    async def scenario() -> None:
        venue = FakeVenue()  # fills MARKET orders at once for 61.8 quote
        h = Harness(venue)
        await h.start_acked(
            make_signal(1),  # buy 0.001 for 61.8: average cost 61800
            make_signal(2, side="sell", qty="0.0004"),  # 0.0004 for 61.8
        )
        partition = next(iter(h.settings.partitions()))
        trade = Trade("binance", "BTCUSDT", "7", "62000", "0.1", "buy", 1, 1)
        await h.redis.xadd(h.settings.keys.trades(partition), trade.to_fields())
        await until(lambda: _field_is(h, "BTCUSDT:mark_price", "62000"))
        await h.finish()
        fields = await _position(h)
        assert fields["BTCUSDT"] == "0.0006"
        assert fields["BTCUSDT:avg_cost"] == "61800"
        sell_price = Decimal("61.8") / Decimal("0.0004")
        realised = (sell_price - Decimal(61800)) * Decimal("0.0004")
        assert Decimal(fields["BTCUSDT:realized_pnl"]) == realised
        assert Decimal(fields["BTCUSDT:unrealized_pnl"]) == Decimal("0.12")

        h.start()  # a restart reads the same numbers back
        await asyncio.sleep(0)
        await h.finish()
        assert await _position(h) == fields

    asyncio.run(scenario())


async def _field_is(h: Harness, name: str, value: str) -> bool:
    return (await _position(h)).get(name) == value


def test_an_unknown_outcome_is_settled_by_a_later_reconciliation() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.timeouts_after_accept = 1  # the order exists, the answer is lost...
        answers = venue.status

        async def silent_status(params: dict[str, Any]) -> dict[str, Any]:
            venue.status_calls.append(params)
            raise AmbiguousOutcome("order.status: no answer within 10 s")

        venue.status = silent_status  # type: ignore[method-assign]  # ...and lookups time out
        h = Harness(venue, unresolved_every_s=0.05)
        await h.add_signal(make_signal(1))
        h.start()
        await until(lambda: h.has_event("unknown"))
        assert await h.redis.scard(h.settings.keys.working_orders("binance")) == 1
        venue.status = answers  # type: ignore[method-assign]
        await until(lambda: h.has_event("ack"))
        await h.finish()
        ack = (await h.events_named("ack"))[0]
        assert ack["source"] == "status:reconcile:unresolved" and ack["status"] == "FILLED"
        assert (await _position(h))["BTCUSDT"] == "0.001"
        assert await h.redis.scard(h.settings.keys.working_orders("binance")) == 0
        assert len(venue.place_calls) == 1

    asyncio.run(scenario())
