"""The trader core's decisions about a signal that replaces a working order (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.builders import build_signal
from tickpipe.common.schema import Signal
from tickpipe.common.settings import Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.processor.dispatch import spec_problem
from tickpipe.processor.strategies import SignalSpec
from tickpipe.trader import actions as act
from tickpipe.trader.core import Replaced, RiskLimits, TraderCore, build_intent
from tickpipe.trader.orders import OrderState
from tickpipe.venues.alpaca.orders import replace_body

NOW = 10**18
OLD = "grid|ETHUSDT|t1|grid|0"
OLD_CID = client_order_id_for(OLD)


def signal(name: str, **fields: Any) -> Signal:
    base = {"signal_id": name, "symbol": "ETHUSDT", "side": "buy", "qty": "0.01",
            "price": "2000", "strategy": "grid", "order_type": "LIMIT", "ts_recv": NOW}  # fmt: skip
    return build_signal(**(base | fields))


def core() -> TraderCore:
    trader = TraderCore(RiskLimits(max_position=Decimal(1)), Settings(max_orders_per_s=100.0))
    trader.market.see_trade("ETHUSDT", "2000", NOW)
    return trader


def old(status: str, filled: str = "0", **fields: Any) -> Replaced:
    intent = build_intent(signal(OLD, **fields), ts_intent=NOW - 1)
    state = OrderState(OLD_CID, "ETHUSDT", "buy", status=status, qty="0.01", filled_qty=filled)
    return Replaced(intent, state)


def test_a_working_order_is_cancelled_first_then_the_new_one_is_recorded() -> None:
    new = signal("grid|ETHUSDT|t2|grid|0", price="2001", replaces=OLD)
    assert core().on_signal(new, NOW, replaced=old("NEW")) == [
        act.CancelFirst(OLD_CID, "replaced by signal grid|ETHUSDT|t2|grid|0")
    ]
    # Cancelled after a partial fill: the new order goes out (the fill stays in the positions).
    [record] = core().on_signal(new, NOW, replaced=old("CANCELED", "0.004"))
    assert isinstance(record, act.RecordIntent)
    assert (record.intent.replaces, record.intent.strategy) == (OLD_CID, "grid")
    by_cid = signal("grid|ETHUSDT|t3|grid|0", replaces=OLD_CID)  # its client order id works too
    [record] = core().on_signal(by_cid, NOW, replaced=old("EXPIRED"))
    assert isinstance(record, act.RecordIntent)


def test_what_cannot_be_replaced_is_refused_with_the_reason() -> None:
    new = signal("grid|ETHUSDT|t2|grid|0", replaces=OLD)
    cases = [
        (Replaced(), f"replaces {OLD}: no order of that id here"),
        (old("FILLED", "0.01"), f"replaces {OLD}: that order filled before it could be "
                                "replaced; nothing placed"),
        (Replaced(old("NEW").intent, old("NEW").state, cancel_tried=True),
         f"replaces {OLD}: its cancel is not confirmed (still NEW); nothing placed"),
        (old("NEW", strategy="momentum"),
         f"replaces {OLD}: that order is strategy momentum's, not grid's"),
        (old("NEW", side="sell"), f"replaces {OLD}: that order is a sell of ETHUSDT, not a buy "
                                  "of ETHUSDT"),
    ]  # fmt: skip
    for replaced, reason in cases:
        trader = core()
        reject, letter = trader.on_signal(new, NOW, replaced=replaced)
        assert isinstance(reject, act.Reject) and (reject.reason, reject.stage) == (
            reason,
            "replace",
        )
        assert isinstance(letter, act.DeadLetter) and letter.fields["reason"] == reason
        assert trader.counts["replace_refusals"] == 1


def test_replaces_travels_in_the_stream_fields_and_is_for_place_signals_only() -> None:
    new = signal("s", replaces=OLD)
    assert Signal.from_fields(new.to_fields()) == new
    spec = SignalSpec("ETHUSDT", "buy", "1", "", "r", action="cancel", replaces="x")
    assert spec_problem(spec) == (
        "replaces is for a place signal (a cancel signal cancels the symbol's orders)"
    )


def test_a_venue_that_replaces_in_one_step_gets_the_new_intent_at_once() -> None:
    trader = core()
    trader.replaces_in_place = frozenset({"LIMIT"})
    new = signal("grid|ETHUSDT|t2|grid|0", qty="0.02", price="2001", replaces=OLD)
    [record] = trader.on_signal(new, NOW, replaced=old("PARTIALLY_FILLED", "0.004"))
    assert isinstance(record, act.RecordIntent) and record.intent.in_place
    assert trader.counts["replaces"] == 1
    # Another type, or a cancel already tried: cancel first, as elsewhere.
    market = signal("grid|ETHUSDT|t3|grid|0", order_type="MARKET", price="", replaces=OLD)
    assert isinstance(trader.on_signal(market, NOW, replaced=old("NEW"))[0], act.CancelFirst)
    body = replace_body(build_intent(new, ts_intent=NOW))
    assert body == {"qty": "0.02", "limit_price": "2001", "time_in_force": "day",
                    "client_order_id": client_order_id_for(new.signal_id)}  # fmt: skip
