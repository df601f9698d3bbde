"""Order types per signal and instrument filters: the checks, each venue's mapping, the rounding."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import pytest

from tests.builders import build_signal
from tests.unit.test_processor_core import PARTITION, TS_NOW, real_entries
from tickpipe.common.instruments import Accepted, InstrumentFilters, Refused, apply_filters
from tickpipe.common.order_spec import order_problem
from tickpipe.common.schema import OrderIntent, Signal, Trade
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.strategies import SignalSpec, Strategy
from tickpipe.trader.core import build_intent
from tickpipe.venues.alpaca.instruments import filters_of_asset
from tickpipe.venues.alpaca.orders import order_body
from tickpipe.venues.alpaca.orders import order_refusal as alpaca_refusal
from tickpipe.venues.binance.instruments import filters_of_exchange_info
from tickpipe.venues.binance.orders import order_refusal as binance_refusal
from tickpipe.venues.binance.orders import place_params

#: exchangeInfo's ETHBTC entry as protocols.md quotes it, NOTIONAL filter included.
EXCHANGE_INFO: dict[str, Any] = {
    "symbols": [
        {
            "symbol": "ETHBTC",
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT"],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.00000100",
                 "maxPrice": "100000.00000000", "tickSize": "0.00000100"},
                {"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "100000.00000000",
                 "stepSize": "0.00100000"},
                {"filterType": "NOTIONAL", "minNotional": "10.00000000", "applyMinToMarket": False,
                 "maxNotional": "10000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
        }
    ]
}  # fmt: skip
SIGN = {"api_key": "k", "api_secret": "s"}


def signal(**changes: Any) -> Signal:
    base: dict[str, Any] = {
        "signal_id": "binance|BTCUSDT|t1|s|0", "strategy": "s", "qty": "0.5", "price": "100.5",
        "reason": "r", "ts_event": 1, "ts_recv": 2, "ts_signal": 3,
    }  # fmt: skip
    return build_signal(**(base | changes))


def intent(**changes: Any) -> OrderIntent:
    return build_intent(signal(**changes), ts_intent=10, order_type="MARKET")


@pytest.mark.parametrize(
    ("order_type", "tif", "post_only", "price", "wanted"),
    [
        ("MARKET", "", False, "", None),
        ("LIMIT", "IOC", False, "1", None),
        ("LIMIT", "", True, "1", None),
        (
            "TRAILING_STOP",
            "",
            False,
            "1",
            "order_type 'TRAILING_STOP' is not one of MARKET, LIMIT, STOP, STOP_LIMIT, "
            "TAKE_PROFIT, TAKE_PROFIT_LIMIT",
        ),
        ("LIMIT", "DAY", False, "1", "time_in_force 'DAY' is not one of GTC, IOC, FOK"),
        ("MARKET", "IOC", False, "", "a MARKET order takes no time_in_force (got IOC)"),
        ("MARKET", "", True, "", "a MARKET order cannot be post_only"),
        ("LIMIT", "GTC", False, "", "a LIMIT order needs a positive limit price, got ''"),
        ("LIMIT", "GTC", False, "-1", "a LIMIT order needs a positive limit price, got '-1'"),
        (
            "LIMIT",
            "FOK",
            True,
            "1",
            "a post_only order rests on the book: time_in_force must be GTC, not FOK",
        ),
    ],
)
def test_order_problem_names_the_field(
    order_type: str, tif: str, post_only: bool, price: str, wanted: str | None
) -> None:
    assert order_problem(order_type, tif, post_only, price) == wanted


def test_the_signal_carries_its_order_through_the_stream_fields() -> None:
    s = signal(order_type="LIMIT", time_in_force="FOK", post_only=False)
    assert Signal.from_fields(s.to_fields()) == s
    assert Signal.from_fields(signal().to_fields()) == signal()
    old = {k: v for k, v in signal().to_fields().items() if k not in ("order_type", "post_only")}
    assert Signal.from_fields(old).order_type == ""  # an entry written before the fields


def test_the_signal_type_wins_over_the_deployment_default() -> None:
    limit = build_intent(signal(order_type="LIMIT"), ts_intent=1, order_type="MARKET")
    assert (limit.order_type, limit.time_in_force, limit.price) == ("LIMIT", "GTC", "100.5")
    market = build_intent(signal(), ts_intent=1, order_type="MARKET")
    assert (market.order_type, market.time_in_force, market.price) == ("MARKET", "", None)
    default = build_intent(signal(), ts_intent=1, order_type="LIMIT")
    assert default.order_type == "LIMIT"


def test_binance_maps_each_order_type() -> None:
    market = place_params(intent(), timestamp_ms=1, **SIGN)
    assert market["type"] == "MARKET" and "timeInForce" not in market and "price" not in market
    ioc = place_params(intent(order_type="LIMIT", time_in_force="IOC"), timestamp_ms=1, **SIGN)
    assert (ioc["type"], ioc["timeInForce"], ioc["price"]) == ("LIMIT", "IOC", "100.5")
    gtc = place_params(intent(order_type="LIMIT"), timestamp_ms=1, **SIGN)
    assert gtc["timeInForce"] == "GTC"
    maker = place_params(intent(order_type="LIMIT", post_only=True), timestamp_ms=1, **SIGN)
    assert maker["type"] == "LIMIT_MAKER" and "timeInForce" not in maker
    assert binance_refusal(intent(order_type="LIMIT", post_only=True)) is None
    assert binance_refusal(intent(order_type="LIMIT", price="")) == (
        "binance: a LIMIT order needs a positive limit price, got ''"
    )


def test_alpaca_maps_what_it_has_and_refuses_the_rest() -> None:
    stock = intent(symbol="AAPL", order_type="LIMIT", time_in_force="FOK")
    assert alpaca_refusal(stock) is None
    assert order_body(stock)["time_in_force"] == "fok"
    assert order_body(intent(symbol="AAPL", order_type="LIMIT"))["time_in_force"] == "day"
    assert order_body(intent(symbol="BTC/USD", order_type="LIMIT"))["time_in_force"] == "gtc"
    crypto_ioc = intent(symbol="BTC/USD", order_type="LIMIT", time_in_force="IOC")
    assert order_body(crypto_ioc)["time_in_force"] == "ioc"
    assert alpaca_refusal(intent(symbol="BTC/USD", order_type="LIMIT", time_in_force="FOK")) == (
        "alpaca: crypto orders take GTC or IOC, not FOK (BTC/USD)"
    )
    assert "no post-only orders" in str(alpaca_refusal(intent(order_type="LIMIT", post_only=True)))


def test_binance_filters_are_read_from_exchange_info() -> None:
    rules = filters_of_exchange_info(EXCHANGE_INFO)["ETHBTC"]
    assert rules.tick_size == "0.00000100" and rules.step_size == "0.00100000"
    assert (rules.min_qty, rules.max_qty) == ("0.00100000", "100000.00000000")
    assert (rules.min_notional, rules.max_notional) == ("10.00000000", "10000.00000000")
    assert "LIMIT_MAKER" in rules.order_types


def test_alpaca_filters_are_read_from_a_crypto_asset() -> None:
    asset = {"symbol": "BTC/USD", "tradable": True, "min_order_size": "0.0001",
             "min_trade_increment": "0.000000001", "price_increment": "1"}  # fmt: skip
    rules = filters_of_asset("BTC/USD", asset)
    assert (rules.min_qty, rules.step_size, rules.tick_size) == ("0.0001", "0.000000001", "1")
    assert rules.order_types == ("MARKET", "LIMIT", "STOP_LIMIT")


RULES = filters_of_exchange_info(EXCHANGE_INFO)["ETHBTC"]


def check(**kw: Any) -> Accepted | Refused:
    args: dict[str, Any] = {"side": "buy", "order_type": "LIMIT", "qty": "1", "price": "20"}
    return apply_filters(RULES, **(args | kw))


def test_rounding_is_toward_less_and_passive() -> None:
    assert check(qty="1.2345", price="20.0000019") == Accepted(
        "1.234",
        "20.000001",
        (
            "quantity 1.2345 rounded down to 1.234 (step 0.00100000)",
            "price 20.0000019 rounded down to 20.000001 (tick 0.00000100)",
        ),
    )
    sell = check(side="sell", price="20.0000011")
    assert isinstance(sell, Accepted) and sell.price == "20.000002"
    assert check() == Accepted("1", "20")


@pytest.mark.parametrize(
    ("changes", "name", "reason"),
    [
        ({"qty": "0.0009"}, "LOT_SIZE", "quantity 0.0009 (after rounding 0) below the minimum"),
        ({"qty": "100001"}, "LOT_SIZE", "quantity 100001 above the maximum 100000.00000000"),
        ({"price": "0.0000001"}, "PRICE_FILTER", "price 0 below the minimum 0.00000100"),
        ({"price": "200000"}, "PRICE_FILTER", "price 200000 above the maximum"),
        ({"qty": "0.4"}, "NOTIONAL", "notional 8 (0.4 x 20) below the minimum 10.00000000"),
        ({"qty": "600"}, "NOTIONAL", "notional 12000 (600 x 20) above the maximum"),
        ({"order_type": "OCO"}, "ORDER_TYPES", "OCO not offered for ETHBTC"),
    ],
)
def test_what_rounding_cannot_fix_is_refused_with_the_filter(
    changes: dict[str, Any], name: str, reason: str
) -> None:
    answer = check(**changes)
    assert isinstance(answer, Refused), answer
    assert answer.filter == name and reason in answer.reason, answer


def test_a_market_order_is_valued_at_the_market_price_for_the_notional() -> None:
    market = {"order_type": "MARKET", "price": None, "qty": "0.4"}
    refused = check(**market, market_price=Decimal("20"))
    assert isinstance(refused, Refused) and refused.filter == "NOTIONAL"
    assert check(**market, market_price=Decimal("30")) == Accepted("0.4", None)
    assert check(**market) == Accepted("0.4", None)  # no price known: the venue is the judge


def test_a_missing_rule_is_no_rule() -> None:
    bare = InstrumentFilters("X", tick_size="0", step_size="")
    assert apply_filters(bare, side="buy", order_type="LIMIT", qty="0.123", price="1.23") == (
        Accepted("0.123", "1.23")
    )


class PostOnlyMaker(Strategy):
    """Quote a post-only limit buy on every trade; every 3rd trade asks for an invalid order."""

    name: ClassVar[str] = "maker"

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        bad = int(trade.trade_id) % 3 == 0
        return [
            SignalSpec(
                trade.symbol,
                "buy",
                "1",
                trade.price,
                "maker",
                order_type="LIMIT",
                time_in_force="IOC" if bad else "",
                post_only=True,
            )
        ]

    def to_state(self) -> None:
        return None

    def load_state(self, data: Any) -> None:
        return None


def test_a_strategy_order_is_carried_and_an_invalid_one_is_its_failure() -> None:
    state = PartitionState(PARTITION, "binance", [PostOnlyMaker()], strategy_max_failures=10**6)
    out = process_batch(state, real_entries(), TS_NOW)
    ids = [int(t.trade_id) for t in out.trades]
    assert [int(s.signal_id.split("|")[2][1:]) for s in out.signals] == [i for i in ids if i % 3]
    assert all(s.order_type == "LIMIT" and s.post_only for s in out.signals)
    assert state.counters["strategy_errors"] == sum(1 for i in ids if i % 3 == 0) > 0
    bad = [w for w in out.warnings if "strategy maker raised BadSignal" in w]
    assert "a post_only order rests on the book: time_in_force must be GTC, not IOC" in bad[0]
