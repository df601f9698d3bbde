"""A strategy's own order updates, fills and positions reach it once, through the checkpoint."""

from __future__ import annotations

from typing import Any, ClassVar

from tests.builders import build_order_update
from tests.unit.test_processor_core import PARTITION, TS_NOW, real_entries
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.schema import OrderUpdate, Trade
from tickpipe.common.units import client_order_id_for
from tickpipe.processor.core import BatchOutput, PartitionState, process_batch
from tickpipe.processor.own_orders import OwnFill, OwnPosition, order_event, refusal_update
from tickpipe.processor.strategies import INSTRUMENTS, ORDERS, TRADES, SignalSpec, Strategy


class Follower(Strategy):
    """Buy 2 on its first trade; on each fill of its own buy orders sell what was filled."""

    name: ClassVar[str] = "follower"
    inputs: ClassVar[frozenset[str]] = frozenset({TRADES, ORDERS, INSTRUMENTS})

    def __init__(self) -> None:
        self.bought = False
        self.log: list[list[Any]] = []

    def on_trade(self, trade: Trade, ts_now: int) -> list[SignalSpec]:
        if self.bought:
            return []
        self.bought = True
        return [SignalSpec(trade.symbol, "buy", "2", trade.price, "entry", order_type="LIMIT")]

    def on_order_update(self, update: OrderUpdate, ts_now: int) -> list[SignalSpec]:
        reason = [update.reason] if update.reason else []
        self.log.append(["update", update.client_order_id, update.status, *reason])
        return []

    def on_fill(self, fill: OwnFill, ts_now: int) -> list[SignalSpec]:
        self.log.append(["fill", fill.qty, fill.price, fill.signal_id])
        if fill.side != "buy":
            return []
        return [SignalSpec(fill.symbol, "sell", fill.qty, fill.price, f"exit {fill.trade_id}")]

    def on_position(self, position: OwnPosition, ts_now: int) -> list[SignalSpec]:
        self.log.append(["position", position.qty, position.avg_price])
        return []

    def on_instruments(self, filters: InstrumentFilters, ts_now: int) -> list[SignalSpec]:
        self.log.append(["instruments", filters.symbol, filters.tick_size, filters.min_notional])
        return []

    def to_state(self) -> list[Any]:
        return [self.bought, self.log]

    def load_state(self, data: Any) -> None:
        self.bought, self.log = bool(data[0]), [list(x) for x in data[1]]


def update(cid: str, status: str, last_qty: str, last_price: str, trade_id: str) -> OrderUpdate:
    return build_order_update(
        client_order_id=cid, order_id="7", side="BUY", order_type="LIMIT", status=status,
        exec_type="TRADE" if last_qty != "0" else "NEW", qty="2", price="61800", filled_qty="0",
        last_qty=last_qty, last_price=last_price, cum_quote="0", trade_id=trade_id,
        ts_event=1_723_161_300_000_000_000, ts_recv=1_723_161_300_000_000_000,
    )  # fmt: skip


def reload(state: PartitionState) -> PartitionState:
    """A takeover: a fresh state and strategy from the checkpoint."""
    return PartitionState.from_bytes(state.to_bytes(), PARTITION, "binance", [Follower()])


def exits(out: BatchOutput) -> list[tuple[str, str, str]]:
    return [(s.signal_id, s.qty, s.price) for s in out.signals if s.side == "sell"]


def test_updates_fills_and_positions_reach_the_strategy_once_across_takeovers() -> None:
    entries = real_entries()
    third = len(entries) // 3
    state = PartitionState(PARTITION, "binance", [Follower()])
    first = process_batch(state, entries[:third], TS_NOW)
    (entry,) = first.signals
    cid = client_order_id_for(entry.signal_id)
    updates = [
        ("1723161300000-0", update(cid, "NEW", "0", "0", "")),
        ("1723161300001-0", update("tp-someone-else", "FILLED", "5", "61000", "90")),
        ("1723161300002-0", update(cid, "PARTIALLY_FILLED", "0.5", "61800", "101")),
    ]
    state = reload(state)
    second = process_batch(state, entries[third : third + 10], TS_NOW, updates=updates)
    assert exits(second) == [
        ("binance|BTCUSDT|o1723161300002-0.1|follower|0", "0.5", "61800"),
    ]
    assert state.counters["own_updates"] == 2 and state.counters["own_fills"] == 1
    # A takeover after that commit: the same updates read again are not handed over again,
    # the new one is, and the position adds up.
    state = reload(state)
    more = [*updates, ("1723161300003-0", update(cid, "FILLED", "1.5", "61700", "102"))]
    third_out = process_batch(state, entries[third + 10 : third + 20], TS_NOW, updates=more)
    assert exits(third_out) == [
        ("binance|BTCUSDT|o1723161300003-0.1|follower|0", "1.5", "61700"),
    ]
    (follower,) = state.strategies
    assert isinstance(follower, Follower)
    assert follower.log == [
        ["update", cid, "NEW"],
        ["update", cid, "PARTIALLY_FILLED"],
        ["fill", "0.5", "61800", entry.signal_id],
        ["position", "0.5", "61800"],
        ["update", cid, "FILLED"],
        ["fill", "1.5", "61700", entry.signal_id],
        ["position", "2", "61725"],  # (0.5 x 61800 + 1.5 x 61700) / 2
    ]
    assert state.own.positions == {"follower|BTCUSDT": ["2", "61725"]}


def test_a_batch_lost_in_a_crash_hands_its_updates_over_again_the_same_way() -> None:
    entries = real_entries()
    state = PartitionState(PARTITION, "binance", [Follower()])
    (entry,) = process_batch(state, entries[:500], TS_NOW).signals
    cid = client_order_id_for(entry.signal_id)
    updates = [("1723161300002-0", update(cid, "FILLED", "2", "61800", "101"))]
    saved = state.to_bytes()
    lost = process_batch(state, entries[500:510], TS_NOW, updates=updates)  # never committed
    state = PartitionState.from_bytes(saved, PARTITION, "binance", [Follower()])
    again = process_batch(state, entries[500:510], TS_NOW, updates=updates)
    assert (
        exits(again)
        == exits(lost)
        == [("binance|BTCUSDT|o1723161300002-0.1|follower|0", "2", "61800")]
    )


def test_a_strategy_that_does_not_follow_orders_gets_none() -> None:
    class Quiet(Follower):
        name: ClassVar[str] = "quiet"
        inputs: ClassVar[frozenset[str]] = frozenset({TRADES})

    state = PartitionState(PARTITION, "binance", [Quiet()])
    (entry,) = process_batch(state, real_entries()[:500], TS_NOW).signals
    cid = client_order_id_for(entry.signal_id)
    updates = [("1723161300002-0", update(cid, "FILLED", "2", "61800", "101"))]
    out = process_batch(state, real_entries()[500:510], TS_NOW, updates=updates)
    assert exits(out) == [] and state.own.orders == {}
    assert state.counters["own_updates"] == 0


def test_a_refusal_by_the_trader_reaches_the_strategy_once() -> None:
    entries = real_entries()
    state = PartitionState(PARTITION, "binance", [Follower()])
    (entry,) = process_batch(state, entries[:500], TS_NOW).signals
    cid = client_order_id_for(entry.signal_id)
    fields = {
        "event": "rejected", "client_order_id": cid, "signal_id": entry.signal_id,
        "symbol": "BTCUSDT", "side": "buy", "qty": "2", "ts": "1723161300000000000",
        "reason": "filter LOT_SIZE: quantity 2 above the maximum 1", "stage": "order",
    }  # fmt: skip
    assert refusal_update({**fields, "event": "ack"}, "binance") is None
    refusal = refusal_update(fields, "binance")
    assert refusal is not None
    refusals = [("1723161300005-0", refusal)]
    process_batch(state, entries[500:510], TS_NOW, order_events=refusals)
    state = reload(state)  # a takeover, and the same entry read again
    process_batch(state, entries[510:520], TS_NOW, order_events=refusals)
    (follower,) = state.strategies
    assert isinstance(follower, Follower)
    assert follower.log == [
        ["update", cid, "REJECTED", "order: filter LOT_SIZE: quantity 2 above the maximum 1"]
    ]


def test_instrument_filters_from_the_trader_reach_the_strategies_that_follow_them_once() -> None:
    entries = real_entries()
    state = PartitionState(PARTITION, "binance", [Follower()])
    rules = InstrumentFilters("BTCUSDT", tick_size="0.01", step_size="0.00001",
                              min_notional="5", order_types=("LIMIT", "MARKET"))  # fmt: skip
    fields = {"event": "instruments", "ts": "1", **rules.to_fields()}
    assert order_event(fields, "binance") == rules
    assert order_event({"event": "ack", "client_order_id": "x"}, "binance") is None
    events = [("1723161300000-0", rules)]
    process_batch(state, entries[:10], TS_NOW, order_events=events)
    state = reload(state)  # a takeover, and the same entry read again
    process_batch(state, entries[10:20], TS_NOW, order_events=events)
    (follower,) = state.strategies
    assert isinstance(follower, Follower)
    assert [e for e in follower.log if e[0] == "instruments"] == [
        ["instruments", "BTCUSDT", "0.01", "5"]
    ]
