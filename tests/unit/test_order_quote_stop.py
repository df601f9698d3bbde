"""Quote-quantity and stop orders: the checks, risk limits, filters, each venue's mapping."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.builders import build_signal
from tickpipe.common.instruments import Accepted, InstrumentFilters, Refused, apply_filters
from tickpipe.common.order_spec import order_problem
from tickpipe.common.schema import OrderIntent, Signal
from tickpipe.common.settings import Settings
from tickpipe.processor.dispatch import spec_problem
from tickpipe.processor.strategies import SignalSpec
from tickpipe.trader import actions as act
from tickpipe.trader.core import TraderCore, build_intent, intent_mismatch
from tickpipe.trader.market import MarketPrice, market_refusal, order_value_price
from tickpipe.trader.risk import RiskLimits, check_signal
from tickpipe.venues.alpaca.orders import order_body
from tickpipe.venues.alpaca.orders import order_refusal as alpaca_refusal
from tickpipe.venues.binance.orders import order_refusal as binance_refusal
from tickpipe.venues.binance.orders import place_params, venue_order_type
from tickpipe.venues.ibkr.orders import order_body as ibkr_body
from tickpipe.venues.ibkr.orders import order_refusal as ibkr_refusal

SIGN = {"api_key": "k", "api_secret": "s"}


def signal(**changes: Any) -> Signal:
    base: dict[str, Any] = {"signal_id": "binance|BTCUSDT|t1|s|0", "qty": "0.5", "price": ""}
    return build_signal(**(base | changes))


def intent(**changes: Any) -> OrderIntent:
    return build_intent(signal(**changes), ts_intent=10, order_type="MARKET")


@pytest.mark.parametrize(
    ("order_type", "tif", "price", "extra", "wanted"),
    [
        ("MARKET", "", "", {"qty": "", "quote_qty": "25"}, None),
        ("STOP", "", "", {"stop_price": "90"}, None),
        ("STOP_LIMIT", "IOC", "89", {"stop_price": "90"}, None),
        ("TAKE_PROFIT", "", "", {"stop_price": "90"}, None),
        ("TAKE_PROFIT_LIMIT", "", "91", {"stop_price": "90"}, None),
        ("TAKE_PROFIT", "", "9", {"stop_price": "9"},
         "a TAKE_PROFIT order takes no limit price (got '9'): use TAKE_PROFIT_LIMIT"),
        ("LIMIT", "", "1", {"quote_qty": "25"}, "quote_qty is for MARKET orders only, not LIMIT"),
        ("MARKET", "", "", {"quote_qty": "-5"},
         "quote_qty must be a positive amount of the quote asset, got '-5'"),
        ("MARKET", "", "", {"qty": "1", "quote_qty": "5"},
         "a quote_qty order names no qty (got qty '1' and quote_qty '5')"),
        ("LIMIT", "", "1", {"stop_price": "2"},
         "stop_price is for stop and take-profit orders only, not LIMIT"),
        ("STOP", "", "", {}, "a STOP order needs a positive stop_price, got ''"),
        ("STOP", "GTC", "", {"stop_price": "9"}, "a STOP order takes no time_in_force (got GTC)"),
        ("STOP", "", "8", {"stop_price": "9"},
         "a STOP order takes no limit price (got '8'): use STOP_LIMIT"),
        ("STOP_LIMIT", "", "", {"stop_price": "9"},
         "a STOP_LIMIT order needs a positive limit price, got ''"),
    ],
)  # fmt: skip
def test_order_problem_names_the_field(
    order_type: str, tif: str, price: str, extra: dict[str, str], wanted: str | None
) -> None:
    assert order_problem(order_type, tif, False, price, **extra) == wanted


def test_a_strategy_spec_needs_the_order_type_its_fields_belong_to() -> None:
    spec = SignalSpec("BTCUSDT", "sell", "1", "", "r", stop_price="90")
    assert spec_problem(spec) == (
        "stop_price needs a stop or take-profit order_type (STOP, STOP_LIMIT...)"
    )
    spec = SignalSpec("BTCUSDT", "buy", "", "", "r", quote_qty="90")
    assert spec_problem(spec) == "quote_qty needs order_type MARKET"
    spec = SignalSpec("BTCUSDT", "buy", "", "", "r", order_type="MARKET", quote_qty="90")
    assert spec_problem(spec) is None


def test_the_signal_and_the_intent_carry_quote_qty_and_stop_price() -> None:
    s = signal(order_type="STOP_LIMIT", price="89", stop_price="90")
    assert Signal.from_fields(s.to_fields()) == s
    old = {k: v for k, v in s.to_fields().items() if k not in ("quote_qty", "stop_price")}
    assert Signal.from_fields(old).stop_price == ""  # an entry written before the fields
    stop_limit = build_intent(s, ts_intent=1)
    assert (stop_limit.price, stop_limit.stop_price, stop_limit.time_in_force) == (
        "89", "90", "GTC"
    )  # fmt: skip
    stop = intent(order_type="STOP", stop_price="90")
    assert (stop.price, stop.stop_price, stop.time_in_force) == (None, "90", "")
    quote = intent(qty="", quote_qty="25")
    assert (quote.qty, quote.quote_qty) == ("", "25")
    assert OrderIntent.from_fields(quote.to_fields()) == quote


def test_an_intent_that_differs_in_quote_or_stop_is_a_mismatch() -> None:
    a = intent(order_type="STOP", stop_price="90")
    assert intent_mismatch(a, intent(order_type="STOP", stop_price="90.0")) is None
    assert intent_mismatch(a, intent(order_type="STOP", stop_price="91")) == ("stop_price 90 != 91")
    q = intent(qty="", quote_qty="25")
    assert intent_mismatch(q, intent(qty="", quote_qty="26")) == "quote_qty 25 != 26"
    assert intent_mismatch(q, intent()) == "qty - != 0.5, quote_qty 25 != -"


def test_a_quote_order_is_valued_at_its_quote_amount_and_sized_at_the_market() -> None:
    quote = signal(qty="", quote_qty="500", order_type="MARKET")
    limits = RiskLimits(max_notional=Decimal(400))
    assert check_signal(quote, limits, price=Decimal(100)) == "notional limit: 500 exceeds 400"
    assert check_signal(quote, RiskLimits(max_notional=Decimal(500)), price=None) is None
    sized = RiskLimits(max_position=Decimal(4))
    assert check_signal(quote, sized) is None  # no price yet: the base quantity is unknown
    assert check_signal(quote, sized, price=Decimal(100)) == (
        "position limit: BTCUSDT would reach 5 (limit 4)"
    )
    assert check_signal(quote, RiskLimits(max_order_qty=Decimal(1)), price=Decimal(250)) == (
        "quantity ~2 (500 quote) exceeds the limit 1"
    )
    both = signal(qty="1", quote_qty="500")
    assert check_signal(both, RiskLimits()) == "a quote_qty order names no qty, got qty '1'"


def test_a_stop_order_is_valued_and_banded_at_its_own_prices() -> None:
    market = MarketPrice(Decimal(100), 5, "trade")
    assert order_value_price(market, "STOP", None, "120") == Decimal(120)
    assert order_value_price(market, "STOP", None, "80") == Decimal(80)
    assert order_value_price(market, "STOP_LIMIT", "70", "80") == Decimal(70)
    assert order_value_price(market, "TAKE_PROFIT", None, "90") == Decimal(90)
    far = market_refusal("BTCUSDT", "80", market, now_ns=5, max_age_ns=10,
                         band_bps=Decimal(500), what="stop price")  # fmt: skip
    assert far is not None and far.startswith("price band: stop price 80 is 2000 bps")


RULES = InstrumentFilters(
    "BTCUSDT", tick_size="0.01", min_price="0.01", max_price="1000000", step_size="0.0001",
    min_qty="0.0001", min_notional="5", max_notional="10000",
    order_types=("MARKET", "LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT"),
)  # fmt: skip


def test_filters_round_a_stop_so_it_never_triggers_earlier_and_value_a_quote_amount() -> None:
    buy = apply_filters(RULES, side="buy", order_type="STOP_LOSS", qty="0.1", price=None,
                        stop_price="100.001")  # fmt: skip
    assert isinstance(buy, Accepted) and buy.stop_price == "100.01"
    sell = apply_filters(RULES, side="sell", order_type="STOP_LOSS_LIMIT", qty="0.1",
                         price="99.005", stop_price="100.009")  # fmt: skip
    assert isinstance(sell, Accepted) and (sell.price, sell.stop_price) == ("99.01", "100")
    small = apply_filters(RULES, side="buy", order_type="MARKET", qty="", price=None,
                          quote_qty="4")  # fmt: skip
    assert small == Refused("NOTIONAL", "notional 4 (quote_qty 4) below the minimum 5")
    fine = apply_filters(RULES, side="buy", order_type="MARKET", qty="", price=None,
                         quote_qty="50")  # fmt: skip
    assert isinstance(fine, Accepted) and fine.qty == ""
    take = apply_filters(RULES, side="buy", order_type="TAKE_PROFIT", qty="0.1", price=None,
                         stop_price="100.009")  # fmt: skip  # a buy take-profit: from above
    assert isinstance(take, Accepted) and take.stop_price == "100"
    refused = apply_filters(RULES, side="sell", order_type="STOP_LOSS", qty="0.1", price=None,
                            stop_price="0.001")  # fmt: skip
    assert isinstance(refused, Refused) and refused.filter == "PRICE_FILTER"


def test_binance_sends_quote_order_qty_and_stop_loss_types() -> None:
    quote = place_params(intent(qty="", quote_qty="25"), timestamp_ms=1, **SIGN)
    assert quote["quoteOrderQty"] == "25" and "quantity" not in quote
    stop = intent(side="sell", order_type="STOP", stop_price="90")
    params = place_params(stop, timestamp_ms=1, **SIGN)
    assert (params["type"], params["stopPrice"], params["quantity"]) == ("STOP_LOSS", "90", "0.5")
    assert "price" not in params and "timeInForce" not in params
    limit = intent(order_type="STOP_LIMIT", price="91", stop_price="90", time_in_force="FOK")
    params = place_params(limit, timestamp_ms=1, **SIGN)
    assert (params["type"], params["price"], params["stopPrice"], params["timeInForce"]) == (
        "STOP_LOSS_LIMIT", "91", "90", "FOK"
    )  # fmt: skip
    assert venue_order_type(limit) == "STOP_LOSS_LIMIT"
    take = intent(order_type="TAKE_PROFIT_LIMIT", price="91", stop_price="90")
    params = place_params(take, timestamp_ms=1, **SIGN)
    assert (params["type"], params["price"], params["stopPrice"], params["timeInForce"]) == (
        "TAKE_PROFIT_LIMIT", "91", "90", "GTC"
    )  # fmt: skip
    assert binance_refusal(intent(order_type="STOP")) == (
        "binance: a STOP order needs a positive stop_price, got ''"
    )


def test_alpaca_sends_notional_stop_and_stop_limit_and_refuses_the_rest() -> None:
    body = order_body(intent(symbol="AAPL", qty="", quote_qty="25"))
    assert body["notional"] == "25" and "qty" not in body and body["type"] == "market"
    assert body["time_in_force"] == "day"
    stop = order_body(intent(symbol="AAPL", side="sell", order_type="STOP", stop_price="90"))
    assert (stop["type"], stop["stop_price"], stop["qty"]) == ("stop", "90", "0.5")
    assert "limit_price" not in stop
    both = intent(symbol="BTC/USD", order_type="STOP_LIMIT", price="91", stop_price="90")
    body = order_body(both)
    assert (body["type"], body["limit_price"], body["stop_price"], body["time_in_force"]) == (
        "stop_limit", "91", "90", "gtc"
    )  # fmt: skip
    assert alpaca_refusal(both) is None
    assert alpaca_refusal(intent(symbol="BTC/USD", order_type="STOP", stop_price="9")) == (
        "alpaca: crypto has no stop-market orders, use STOP_LIMIT (BTC/USD)"
    )
    assert alpaca_refusal(intent(order_type="TAKE_PROFIT", stop_price="9")) == (
        "alpaca: no take-profit orders outside a bracket (use a LIMIT order)"
    )
    ioc = intent(symbol="AAPL", order_type="STOP_LIMIT", price="9", stop_price="9",
                 time_in_force="IOC")  # fmt: skip
    assert alpaca_refusal(ioc) == "alpaca: a stop order rests until triggered: GTC, not IOC"


def test_the_trader_core_bands_a_stop_and_values_a_quote_order_at_its_amount() -> None:
    now = 10**18
    core = TraderCore(RiskLimits(max_notional=Decimal(1000)), Settings(max_orders_per_s=100.0))
    core.market.see_trade("BTCUSDT", "100", now)
    s = signal(ts_recv=now, side="sell", order_type="STOP", stop_price="50")
    [reject] = core.on_signal(s, now, market_loaded=True)
    assert isinstance(reject, act.Reject)
    assert reject.reason.startswith("price band: stop price 50 is 5000 bps from the market 100")
    near = signal(signal_id="x|2", ts_recv=now, side="sell", order_type="STOP", stop_price="99")
    assert [type(a) for a in core.on_signal(near, now)] == [act.RecordIntent]
    big = signal(signal_id="x|3", ts_recv=now, qty="", quote_qty="1500", order_type="MARKET")
    [reject] = core.on_signal(big, now)
    assert isinstance(reject, act.Reject) and reject.reason == "notional limit: 1500 exceeds 1000"


def test_ibkr_sends_stp_and_stop_limit_and_refuses_what_the_gateway_lacks() -> None:
    stop = intent(symbol="AAPL", qty="2", side="sell", order_type="STOP", stop_price="90.5")
    (ticket,) = ibkr_body(stop, conid=1, account="DU1")["orders"]
    assert (ticket["orderType"], ticket["price"], ticket["tif"]) == ("STP", 90.5, "DAY")
    assert "auxPrice" not in ticket
    both = intent(symbol="AAPL", qty="2", order_type="STOP_LIMIT", price="91", stop_price="90",
                  time_in_force="IOC")  # fmt: skip
    (ticket,) = ibkr_body(both, conid=1, account="DU1")["orders"]
    assert (ticket["orderType"], ticket["price"], ticket["auxPrice"], ticket["tif"]) == (
        "STOP_LIMIT", 91, 90, "IOC"
    )  # fmt: skip
    assert ibkr_refusal(both) is None
    assert ibkr_refusal(intent(order_type="LIMIT", price="1", post_only=True)) == (
        "ibkr: no post-only orders (Binance's LIMIT_MAKER has no gateway equivalent)"
    )
    assert ibkr_refusal(intent(order_type="TAKE_PROFIT", stop_price="9")) == (
        "ibkr: no TAKE_PROFIT orders in the gateway protocol spoken here"
    )
    assert ibkr_refusal(intent(order_type="STOP")) == (
        "ibkr: a STOP order needs a positive stop_price, got ''"
    )
