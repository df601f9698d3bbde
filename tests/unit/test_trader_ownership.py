"""Unit tests of the pure parts of one-trader-per-account, adoption and loud mismatches.

Fill ids applied once per order, the fenced change's wire form, the lease's local freshness,
the pipeline's own client order ids, adopted intents, and intent mismatches.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from common.names import Keys, Partition
from common.schema import OrderIntent
from common.units import client_order_id_for
from trader.core import OrderState, adopted_intent, advance, intent_mismatch, is_own_client_order_id
from trader.fence import Change, encode_change
from trader.lease import FRESH_SHARE, Lease
from venues.binance.orders import all_orders_params


def _buy() -> OrderState:
    return OrderState("tp-1", "BTCUSDT", "buy", qty="0.003")


def test_a_fill_id_applied_once_moves_the_position_once() -> None:
    state, fill = advance(_buy(), status="PARTIALLY_FILLED", filled_qty="0.001",
                          cum_quote="61.8", fill_id="7", last_qty="0.001")  # fmt: skip
    assert fill.qty == Decimal("0.001") and state.fill_ids == ("7",)
    again, none = advance(state, status="PARTIALLY_FILLED", filled_qty="0.001",
                          cum_quote="61.8", fill_id="7", last_qty="0.001")  # fmt: skip
    assert not none and again == state


def test_a_fill_without_a_cumulative_quantity_grows_the_order_by_its_own() -> None:
    state, fill = advance(_buy(), status="PARTIALLY_FILLED", filled_qty="", fill_id="a",
                          last_qty="0.001", fallback_price=Decimal(60000))  # fmt: skip
    assert state.filled_qty == "0.001" and fill.quote == Decimal(60)
    state, fill = advance(state, status="PARTIALLY_FILLED", filled_qty="", fill_id="b",
                          last_qty="0.0005", fallback_price=Decimal(60000))  # fmt: skip
    assert state.filled_qty == "0.0015" and fill.qty == Decimal("0.0005")
    state, fill = advance(state, status="FILLED", filled_qty="", fill_id="b", last_qty="0.0005")
    assert not fill and state.filled_qty == "0.0015"


def test_a_snapshot_then_the_same_fill_by_id_counts_once() -> None:
    acked, fill = advance(_buy(), status="FILLED", filled_qty="0.003", cum_quote="185.4")
    assert fill.qty == Decimal("0.003")
    update, none = advance(acked, status="FILLED", filled_qty="0.003", cum_quote="185.4",
                           fill_id="9", last_qty="0.003")  # fmt: skip
    assert not none and update.fill_ids == ("9",)


def test_no_trade_id_is_no_fill_id_and_ids_survive_a_round_trip() -> None:
    state, _ = advance(_buy(), status="NEW", filled_qty="0", fill_id="-1")
    assert state.fill_ids == ()
    state, _ = advance(state, status="PARTIALLY_FILLED", filled_qty="0.001", fill_id="5")
    assert OrderState.from_dict(orjson.loads(orjson.dumps(state.to_dict()))) == state


def test_a_change_is_sent_as_keys_and_one_json_argument() -> None:
    change = Change("tp:{binance}:trader-lease")
    change.check("tp:{binance}:intent:x", None)
    change.check("tp:{binance}:positions", "0.5", field="BTCUSDT")
    change.write("XADD", "tp:{binance}:orders", "*", "event", "ack")
    change.write("HSET", "tp:{binance}:positions", "BTCUSDT", "0.6")
    keys, args = encode_change(change, "trd:1:ab")
    assert keys == [
        "tp:{binance}:trader-lease",
        "tp:{binance}:intent:x",
        "tp:{binance}:positions",
        "tp:{binance}:orders",
    ]
    assert args[0] == "trd:1:ab"
    assert orjson.loads(args[1]) == [
        [["GET", 2, "", False], ["HGET", 3, "BTCUSDT", "0.5"]],
        [["XADD", 4, "*", "event", "ack"], ["HSET", 3, "BTCUSDT", "0.6"]],
    ]


def test_the_lease_is_fresh_for_a_share_of_its_period_after_a_confirmed_renewal() -> None:
    now = [100.0]
    lease = Lease(None, Keys("tp"), "binance", [Partition("binance", 0)],  # type: ignore[arg-type]
                  token="t", lease_ms=5000, monotonic=lambda: now[0])  # fmt: skip
    assert not lease.fresh()  # never confirmed
    lease.confirmed_at = 100.0
    now[0] = 100.0 + 5 * FRESH_SHARE - 0.01
    assert lease.fresh()
    now[0] = 100.0 + 5 * FRESH_SHARE
    assert not lease.fresh()  # stops acting well before the lease can expire
    assert lease.keys == ["tp:{binance}:trader-lease", "tp:{binance:0}:trader-lease"]
    assert lease.renew_s == 1.25 and lease.retry_s == 1.0  # takeover within two periods


def test_only_ids_derived_from_signal_ids_are_the_pipelines_own() -> None:
    assert is_own_client_order_id(client_order_id_for("threshold:BTCUSDT:1"))
    for other in ("tp-orphan", "someone-else", "TP-" + "a" * 32, "tp-" + "a" * 33, ""):
        assert not is_own_client_order_id(other)


def test_an_adopted_intent_is_rebuilt_from_the_venue_order() -> None:
    order = {"symbol": "BTCUSDT", "clientOrderId": "tp-" + "b" * 32, "side": "SELL",
             "type": "LIMIT", "origQty": "0.00100000", "price": "61800.50000000"}  # fmt: skip
    intent = adopted_intent(order, venue="binance", ts_intent=7)
    assert intent == OrderIntent("tp-" + "b" * 32, "", "binance", "BTCUSDT", "sell", "LIMIT",
                                 "0.001", "61800.5", 0, 7)  # fmt: skip
    market = adopted_intent({**order, "type": "MARKET", "price": "0"}, venue="binance",
                            ts_intent=7)  # fmt: skip
    assert market.price is None and market.order_type == "MARKET"


def _intent(**changes: str) -> OrderIntent:
    fields = {"side": "buy", "qty": "0.001", "price": "61800.5", "symbol": "BTCUSDT"} | changes
    return OrderIntent("tp-x", "s", "binance", fields["symbol"], fields["side"], "LIMIT",
                       fields["qty"], fields["price"] or None, 1, 2)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"qty": "0.0010", "price": "61800.50"}, None),  # the same numbers
        ({"side": "sell"}, "side buy != sell"),
        ({"qty": "0.002"}, "qty 0.001 != 0.002"),
        ({"price": "61900"}, "price 61800.5 != 61900"),
        ({"price": ""}, None),  # a MARKET intent has no price to compare
        ({"symbol": "ETHUSDT", "side": "sell"}, "symbol BTCUSDT != ETHUSDT, side buy != sell"),
    ],
)
def test_intent_mismatch_names_every_difference(changes: dict[str, str], expected: str) -> None:
    assert intent_mismatch(_intent(), _intent(**changes)) == expected


def test_all_orders_params_ask_from_a_time_or_from_an_order_id() -> None:
    sign = {"api_key": "k", "api_secret": "s", "timestamp_ms": 5}
    by_time = all_orders_params("BTCUSDT", start_ms=1000, **sign)
    assert by_time["startTime"] == 1000 and "orderId" not in by_time and by_time["limit"] == 1000
    by_id = all_orders_params("BTCUSDT", start_ms=1000, from_order_id=42, limit=10, **sign)
    assert by_id["orderId"] == 42 and "startTime" not in by_id and by_id["signature"]
