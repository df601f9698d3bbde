"""The order terms are declared once and travel unchanged from a strategy's spec to the intent.

A strategy names its order with six terms (``order_type time_in_force post_only quote_qty
stop_price replaces``). The spec, the signal on ``{P}:signals`` and the trader's intent must all
carry every one of them, the stream entries must keep their field layout, and the constructors
strategy authors and the stages call must keep their shape.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from tickpipe.common.schema import OrderIntent, OrderTerms, Signal, Trade, order_terms
from tickpipe.common.units import client_order_id_for
from tickpipe.processor.dispatch import route
from tickpipe.processor.state import PartitionState
from tickpipe.processor.strategies import TRADES, SignalSpec, Strategy
from tickpipe.trader.intent_rules import build_intent

#: The terms as the order rules (common/order_spec.py) and the venues' adapters name them.
TERMS = ("order_type", "time_in_force", "post_only", "quote_qty", "stop_price", "replaces")

#: Valid orders that, between them, set every term to something other than its default.
SPECS: list[dict[str, Any]] = [
    {"qty": "1", "price": "100", "order_type": "LIMIT", "time_in_force": "GTC",
     "post_only": True, "replaces": "binance|BTCUSDT|t0|keeper|0"},
    {"qty": "1", "price": "100", "order_type": "STOP_LIMIT", "time_in_force": "IOC",
     "stop_price": "99.5"},
    {"qty": "", "price": "", "order_type": "MARKET", "quote_qty": "25.5"},
]  # fmt: skip


#: ``{P}:signals`` entries, field by field in order, as consumers and recorded streams have them.
SIGNAL_LAYOUT = (
    "v", "signal_id", "venue", "symbol", "strategy", "action", "side", "qty", "price", "reason",
    "cause", "ts_event", "ts_recv", "ts_signal", "order_type", "time_in_force", "post_only",
    "quote_qty", "stop_price", "replaces",
)  # fmt: skip

#: An intent's fields (the trader's intent record and its ``orders`` entries), in order.
INTENT_LAYOUT = (
    "v", "client_order_id", "signal_id", "venue", "symbol", "side", "order_type", "qty", "price",
    "ts_signal", "ts_intent", "time_in_force", "post_only", "quote_qty", "stop_price",
    "strategy", "replaces", "in_place",
)  # fmt: skip


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_terms_are_declared_once_and_every_holder_has_all_of_them() -> None:
    assert tuple(f.name for f in dataclasses.fields(OrderTerms)) == TERMS
    assert issubclass(SignalSpec, OrderTerms) and issubclass(Signal, OrderTerms)
    for holder in (SignalSpec, Signal):
        own = inspect.get_annotations(holder)
        assert not set(own) & set(TERMS), f"{holder.__name__} declares a term again"
    assert set(TERMS) <= _names(OrderIntent)


class _Keeper(Strategy):
    """Answers every trade with the orders of :data:`SPECS`."""

    name = "keeper"
    inputs = frozenset({TRADES})

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        return [SignalSpec(trade.symbol, "buy", reason="all terms", **spec) for spec in SPECS]

    def to_state(self) -> None:
        return None

    def load_state(self, data: Any) -> None:
        return None


def _terms(holder: object) -> dict[str, Any]:
    return {name: getattr(holder, name) for name in TERMS}


def test_every_term_travels_from_the_spec_to_the_signal_and_the_intent() -> None:
    state = PartitionState("binance:0", "binance", [_Keeper()], strategy_max_failures=10**6)
    trade = Trade("binance", "BTCUSDT", "1", "100", "1", "buy", 10, 20)
    signals: list[Signal] = []
    warnings: list[str] = []
    route(state, signals, warnings, [*state.routes[TRADES]], TRADES, "on_trade", trade,
          ident="binance|BTCUSDT|t1", venue="binance", cause="1-0", ts_event=10, ts_recv=20,
          ts_now=30)  # fmt: skip
    assert not warnings and len(signals) == len(SPECS)
    defaults = _terms(OrderTerms())
    assert all(any(_terms(s)[n] != defaults[n] for s in signals) for n in TERMS)
    for spec, signal in zip(SPECS, signals, strict=True):
        wanted = defaults | {n: v for n, v in spec.items() if n in TERMS}
        assert _terms(signal) == wanted == order_terms(signal)
        decoded = Signal.from_fields(signal.to_fields())
        assert decoded == signal
        intent = build_intent(decoded, ts_intent=40)
        # The intent names the replaced order by the client order id its signal id gives.
        replaced = client_order_id_for(wanted["replaces"]) if wanted["replaces"] else ""
        assert _terms(intent) == wanted | {"replaces": replaced}


def test_the_stream_layouts_of_signals_and_intents_are_unchanged() -> None:
    signal = Signal("s", "binance", "X", "th", "place", "buy", "1", "2", "r", "c", 1, 2, 3,
                    order_type="LIMIT", post_only=True)  # fmt: skip
    fields = signal.to_fields()
    assert tuple(fields) == SIGNAL_LAYOUT
    assert (fields["order_type"], fields["post_only"], fields["stop_price"]) == ("LIMIT", "1", "")
    intent = OrderIntent("c1", "s1", "binance", "X", "buy", "LIMIT", "1", "2", 3, 4,
                         time_in_force="GTC", stop_price="")  # fmt: skip
    assert tuple(intent.to_fields()) == INTENT_LAYOUT


def test_the_constructors_keep_their_call_shape() -> None:
    spec = SignalSpec("BTCUSDT", "sell", "0.5", "101", "exit", "place", "1-0", order_type="LIMIT")
    assert (spec.symbol, spec.action, spec.cause, spec.order_type) == (
        "BTCUSDT", "place", "1-0", "LIMIT",
    )  # fmt: skip
    assert spec.time_in_force == "" and spec.post_only is False and spec.replaces == ""
    signal = Signal("s", "binance", "X", "th", "cancel", "buy", "1", "2", "r", "c", 1, 2, 3)
    assert (signal.action, signal.ts_signal, signal.order_type) == ("cancel", 3, "")
    intent = OrderIntent("c1", "s1", "binance", "X", "buy", "MARKET", "1", None, 1, 2)
    assert (intent.order_type, intent.qty, intent.ts_intent) == ("MARKET", "1", 2)
