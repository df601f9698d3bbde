"""Unit tests of the trader's pure core: intents, risk, signing, answers, order life, positions.

The core's decisions are asserted as the actions it returns for each input (a signal, what Redis
or the venue answered, an order update, a tick), the way websockets' tests assert frames.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests import doc_vectors as doc
from tests.builders import build_order_update, build_signal
from tickpipe.common.errors import (
    AmbiguousOutcome,
    AuthError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    VenueUnavailable,
)
from tickpipe.common.schema import OrderIntent, RawFrame, Signal
from tickpipe.common.settings import Settings
from tickpipe.common.units import MS, client_order_id_for
from tickpipe.common.venue_clock import SKEW_MARGIN_MS
from tickpipe.trader import actions as act
from tickpipe.trader.core import (
    OrderState,
    OrderTracker,
    RiskLimits,
    TraderCore,
    advance,
    build_intent,
    check_signal,
    discrepancy,
)
from tickpipe.trader.positions import Position, PositionBook
from tickpipe.trader.tasks import connect_markers
from tickpipe.venues.binance.orders import (
    cancel_params,
    list_result_of,
    open_orders_params,
    order_wait_s,
    place_params,
    result_of,
    sign_params,
    status_params,
)
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

# protocols.md §2.1, WebSocket API test vector.


def make_signal(**overrides: Any) -> Signal:
    fields: dict[str, Any] = {
        "signal_id": "threshold:BTCUSDT:1700000000000000000:up",
        "reason": "crossed 61800 upwards",
        "ts_event": 1_700_000_000_000_000_000,
        "ts_recv": 1_700_000_000_001_000_000,
        "ts_signal": 1_700_000_000_002_000_000,
    }
    return build_signal(**(fields | overrides))


# -- intents and risk ------------------------------------------------------------------------------
def test_intent_is_a_market_order_whose_id_derives_from_the_signal() -> None:
    signal = make_signal()
    intent = build_intent(signal, ts_intent=42)
    assert intent.client_order_id == client_order_id_for(signal.signal_id)
    assert (intent.symbol, intent.side, intent.order_type, intent.qty, intent.price) == (
        "BTCUSDT",
        "buy",
        "MARKET",
        "0.001",
        None,
    )
    assert (intent.signal_id, intent.ts_signal, intent.ts_intent) == (
        signal.signal_id,
        signal.ts_signal,
        42,
    )
    # Same signal, same id (idempotency across restarts); another signal, another id.
    assert build_intent(signal, ts_intent=99).client_order_id == intent.client_order_id
    other = build_intent(make_signal(signal_id="x"), ts_intent=42)
    assert other.client_order_id != intent.client_order_id


def test_risk_accepts_a_normal_signal() -> None:
    limits = RiskLimits(max_order_qty=Decimal("0.01"), symbols=frozenset({"BTCUSDT"}))
    assert check_signal(make_signal(), limits) is None


@pytest.mark.parametrize(
    ("signal", "limits", "words"),
    [
        (make_signal(), RiskLimits(kill_switch=True), "kill switch"),
        (make_signal(qty="0.02"), RiskLimits(max_order_qty=Decimal("0.01")), "exceeds"),
        (make_signal(qty="0"), RiskLimits(), "positive"),
        (make_signal(qty="abc"), RiskLimits(), "positive"),
        (make_signal(side="hold"), RiskLimits(), "side"),
        (make_signal(action="cancel"), RiskLimits(), "not an order"),
        (make_signal(symbol="DOGEUSDT"), RiskLimits(symbols=frozenset({"BTCUSDT"})), "symbol"),
    ],
)
def test_risk_refuses_with_a_reason(signal: Signal, limits: RiskLimits, words: str) -> None:
    reason = check_signal(signal, limits)
    assert reason is not None and words in reason


# -- signing ---------------------------------------------------------------------------------------
def test_signing_matches_the_binance_doc_vector() -> None:
    params = dict(doc.WS_API_ORDER)
    signed = sign_params(
        params,
        api_key=doc.BINANCE_KEY,
        api_secret=doc.BINANCE_SECRET,
        timestamp_ms=doc.WS_API_TIMESTAMP_MS,
        recv_window_ms=doc.WS_API_RECV_WINDOW_MS,
    )
    assert signed["signature"] == doc.WS_API_SIGNATURE
    assert "signature" not in params  # the caller's params are not modified


def test_place_params_are_a_signed_market_order() -> None:
    intent = build_intent(make_signal(side="sell", qty="0.5"), ts_intent=1)
    params = place_params(intent, api_key="k", api_secret="s", timestamp_ms=1700000000123)
    assert {k: v for k, v in params.items() if k != "signature"} == {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "MARKET",
        "quantity": "0.5",
        "newClientOrderId": intent.client_order_id,
        "newOrderRespType": "RESULT",
        "apiKey": "k",
        "timestamp": 1700000000123,
        "recvWindow": 5000,
    }
    assert params["signature"] == hmac_signature("s", ws_api_payload(params))
    assert len(params["newClientOrderId"]) <= 36


def test_status_params_look_up_by_client_order_id() -> None:
    params = status_params("ETHUSDT", "tp-abc", api_key="k", api_secret="s", timestamp_ms=5)
    assert params["symbol"] == "ETHUSDT" and params["origClientOrderId"] == "tp-abc"
    assert params["signature"] == hmac_signature("s", ws_api_payload(params))


# -- answers ---------------------------------------------------------------------------------------
def answer(status: int, code: int, msg: str, **data: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "msg": msg}
    if data:
        error["data"] = data
    return {"id": "tp-1", "status": status, "error": error}


def test_accepted_answer_returns_the_result() -> None:
    result = {"symbol": "BTCUSDT", "orderId": 28, "status": "FILLED", "executedQty": "0.001"}
    assert result_of({"id": "tp-1", "status": 200, "result": result}) == result


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (answer(400, -2010, "Duplicate order sent."), DuplicateOrder),
        (
            answer(400, -2010, "Account has insufficient balance for requested action."),
            OrderRejected,
        ),
        (answer(400, -2013, "Order does not exist."), OrderNotFound),
        (answer(401, -2015, "Invalid API-key, IP, or permissions for action."), AuthError),
        (answer(400, -1022, "Signature for this request is not valid."), AuthError),
        (answer(429, -1003, "Too much request weight used"), RateLimited),
        (answer(418, -1003, "Way too much request weight used; IP banned"), RateLimited),
        (answer(503, -1008, "Server is currently overloaded"), AmbiguousOutcome),
        (answer(400, -1007, "Timeout waiting for response from backend server."), AmbiguousOutcome),
        (
            answer(400, -1021, "Timestamp for this request is outside of the recvWindow."),
            OrderRejected,
        ),
        (answer(400, -1121, "Invalid symbol."), OrderRejected),
        ({"id": "tp-1", "status": 500}, AmbiguousOutcome),
    ],
)
def test_error_answers_are_classified(response: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        result_of(response)
    assert type(caught.value) is error


def test_rate_limit_carries_the_wait_until_retry_after() -> None:
    response = answer(429, -1003, "Too much request weight used", retryAfter=1_700_000_005_000)
    with pytest.raises(RateLimited) as caught:
        result_of(response, now_ms=1_700_000_002_500)
    assert caught.value.retry_after_s == pytest.approx(2.5)
    assert caught.value.code == -1003 and caught.value.status == 429


# -- order life and positions ----------------------------------------------------------------------
def order(side: str = "buy", **kw: Any) -> OrderState:
    return OrderState("tp-1", "BTCUSDT", side, qty="1", **kw)


def test_order_moves_new_partially_filled_filled_and_stays_filled() -> None:
    tracker = OrderTracker()
    state, fill = tracker.apply(order(), status="NEW", filled_qty="0", order_id="7")
    assert (state.status, state.order_id, fill.qty) == ("NEW", "7", 0)
    state, fill = tracker.apply(state, status="PARTIALLY_FILLED", filled_qty="0.4")
    assert (state.status, fill.qty) == ("PARTIALLY_FILLED", Decimal("0.4"))
    state, fill = tracker.apply(state, status="FILLED", filled_qty="1.0")
    assert (state.status, fill.qty) == ("FILLED", Decimal("0.6"))
    # A late or replayed report changes nothing.
    state, fill = tracker.apply(state, status="PARTIALLY_FILLED", filled_qty="0.4")
    assert (state.status, state.filled_qty, fill.qty) == ("FILLED", "1.0", 0)
    assert tracker.position("BTCUSDT") == Decimal("1")
    assert tracker.orders["tp-1"] == state


@pytest.mark.parametrize("final", ["CANCELED", "REJECTED", "EXPIRED"])
def test_terminal_states_are_final(final: str) -> None:
    state, _ = advance(order(), status=final, filled_qty="0")
    assert state.status == final
    for later in ("NEW", "PARTIALLY_FILLED", "FILLED"):
        assert advance(state, status=later, filled_qty="0")[0].status == final


def test_partially_filled_does_not_go_back_to_new() -> None:
    state, _ = advance(order(), status="PARTIALLY_FILLED", filled_qty="0.5")
    assert advance(state, status="NEW", filled_qty="0")[0].status == "PARTIALLY_FILLED"


def test_unknown_status_is_ignored() -> None:
    assert advance(order(), status="SOMETHING", filled_qty="0")[0].status == "NEW"


def test_sells_reduce_the_position_and_fills_count_once() -> None:
    tracker = OrderTracker(PositionBook({"BTCUSDT": Position(qty=Decimal("2"))}))
    sell = OrderState("tp-2", "BTCUSDT", "sell", qty="0.5")
    state, _ = tracker.apply(sell, status="FILLED", filled_qty="0.50000000")  # the ack
    tracker.apply(state, status="FILLED", filled_qty="0.50000000")  # the order update
    assert tracker.position("BTCUSDT") == Decimal("1.5")
    assert tracker.position("ETHUSDT") == 0


def test_state_round_trips_through_a_dict() -> None:
    state = order(status="PARTIALLY_FILLED", filled_qty="0.3", order_id="9", ts_event=5)
    assert OrderState.from_dict(state.to_dict()) == state


# -- limit orders, cancels, open orders, venue order counts -----------------------------------
def test_limit_intent_is_priced_at_the_signal_and_good_till_cancelled() -> None:
    intent = build_intent(make_signal(), ts_intent=42, order_type="LIMIT")
    assert (intent.order_type, intent.price) == ("LIMIT", "61800.5")
    params = place_params(intent, api_key="k", api_secret="s", timestamp_ms=1)
    assert (params["type"], params["timeInForce"], params["price"]) == ("LIMIT", "GTC", "61800.5")
    assert params["signature"] == hmac_signature("s", ws_api_payload(params))
    market = place_params(build_intent(make_signal(), ts_intent=42), api_key="k", api_secret="s",
                          timestamp_ms=1)  # fmt: skip
    assert "price" not in market and "timeInForce" not in market


def test_cancel_and_open_orders_params_are_signed() -> None:
    cancel = cancel_params("BTCUSDT", "tp-1", api_key="k", api_secret="s", timestamp_ms=5)
    assert (cancel["symbol"], cancel["origClientOrderId"]) == ("BTCUSDT", "tp-1")
    assert cancel["signature"] == hmac_signature("s", ws_api_payload(cancel))
    every = open_orders_params(api_key="k", api_secret="s", timestamp_ms=5)
    assert "symbol" not in every and every["signature"] == hmac_signature(
        "s", ws_api_payload(every)
    )
    assert (
        open_orders_params(api_key="k", api_secret="s", timestamp_ms=5, symbol="X")["symbol"] == "X"
    )


def test_cancel_of_an_order_that_is_not_open_means_not_found() -> None:
    with pytest.raises(OrderNotFound):
        result_of({"status": 400, "error": {"code": -2011, "msg": "Unknown order sent."}})


def test_list_answers() -> None:
    assert list_result_of({"status": 200, "result": [{"a": 1}]}) == [{"a": 1}]
    with pytest.raises(OrderRejected):
        list_result_of({"status": 400, "error": {"code": -1100, "msg": "Illegal method"}})
    with pytest.raises(OrderRejected):
        list_result_of({"status": 200, "result": {}})
    with pytest.raises(AmbiguousOutcome):
        list_result_of({"status": 503, "error": {"code": -1007, "msg": "Timeout"}})


def _orders(count: int, limit: int, interval: str = "SECOND", num: int = 10) -> dict[str, Any]:
    return {"rateLimitType": "ORDERS", "interval": interval, "intervalNum": num,
            "limit": limit, "count": count}  # fmt: skip


def test_order_counts_at_their_limit_hold_orders_until_the_window_ends() -> None:
    weight = {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
              "limit": 6000, "count": 6000}  # fmt: skip
    assert order_wait_s([_orders(12, 50), weight], 1_000) == 0
    assert order_wait_s([_orders(50, 50)], 1_657_000) == pytest.approx(3.0)
    assert order_wait_s([_orders(9, 10, "DAY", 1)], 0) == 0
    assert order_wait_s([_orders(10, 10, "DAY", 1)], 86_399_000) == pytest.approx(1.0)
    assert order_wait_s(None, 0) == 0 and order_wait_s([{"rateLimitType": "ORDERS"}], 0) == 0


def test_connect_markers_are_found_among_raw_entries() -> None:
    def raw(kind: str, data: str) -> tuple[bytes, dict[bytes, bytes]]:
        frame = RawFrame(kind, "binance", "user/a.1", 0, 1, data, "user")
        return b"1-0", {k.encode(): v.encode() for k, v in frame.to_fields().items()}

    entries = [
        raw("marker", '{"event":"connect","conn":"user/a.1"}'),
        raw("marker", '{"event":"disconnect","conn":"user/a.1"}'),
        raw("ws", '{"event":"connect"}'),
        raw("marker", "not json"),
        (b"2-0", {b"kind": b"marker"}),
    ]
    assert connect_markers(entries) == ["user/a.1"]


# -- the core's actions: inputs in, actions out (no Redis, no venue, no clock) ---------------------
T0 = 1_700_000_000_000_000_000  # a signal's time; the core is fed time as ns
S = 1_000_000_000


LIMITS = RiskLimits(
    max_order_qty=Decimal("0.01"),
    max_position=Decimal("0.002"),
    max_notional=Decimal("1000"),
    symbols=frozenset({"BTCUSDT", "ETHUSDT"}),
)


def fresh_core(*, settings: Settings | None = None, **options: Any) -> TraderCore:
    """A core with BTCUSDT traded at 61800 a moment before ``T0`` (100 orders/s allowed)."""
    core = TraderCore(LIMITS, settings or Settings(max_orders_per_s=100.0), **options)
    core.market.see_trade("BTCUSDT", "61800", T0 - S)
    return core


def working(core: TraderCore, signal: Signal, *, order_id: str = "") -> OrderIntent:
    """Put ``signal``'s order among the working orders, as if sent (``order_id``: answered)."""
    intent = build_intent(signal, ts_intent=T0)
    state = OrderState(
        intent.client_order_id, intent.symbol, intent.side, qty=intent.qty, order_id=order_id
    )
    core.tracker.orders[intent.client_order_id] = state
    return intent


def test_a_place_signal_records_its_intent_then_sends_it_once() -> None:
    core = fresh_core()
    signal = make_signal()
    intent = build_intent(signal, ts_intent=T0)
    assert core.on_signal(signal, T0) == [act.RecordIntent(intent)]
    assert intent.client_order_id in core.inflight  # reconciliation leaves it alone from here
    assert core.on_recorded(intent, None) == [act.Send(intent)]
    # The same decision read again while its request is under way: wait, never record again.
    assert core.on_signal(signal, T0 + 1) == [act.Await(intent.client_order_id)]


def test_an_intent_recorded_by_an_earlier_run_is_looked_up_never_sent() -> None:
    core = fresh_core()
    signal = make_signal()
    intent = build_intent(signal, ts_intent=T0)
    stored = build_intent(signal, ts_intent=T0 - 60 * S)
    core.on_signal(signal, T0)
    assert core.on_recorded(intent, stored) == []
    assert intent.client_order_id not in core.inflight
    assert core.on_stored(signal, intent, stored, outcome_known=False) == [
        act.Resolve(stored, source="restart")
    ]
    assert stored.client_order_id in core.inflight
    # Its outcome already recorded: nothing to send and nothing to look up.
    assert core.on_stored(signal, intent, stored, outcome_known=True) == []


def test_another_decisions_intent_is_a_dead_letter_and_an_alarm() -> None:
    core = fresh_core(counts={})
    signal = make_signal()
    intent = build_intent(signal, ts_intent=T0)
    stored = build_intent(make_signal(side="sell"), ts_intent=T0 - S)
    actions = core.on_stored(
        signal, intent, stored, outcome_known=False, entry=("tp:{binance:0}:signals", "7-0")
    )
    assert [type(a) for a in actions] == [act.Alarm, act.DeadLetter]
    alarm, letter = actions
    assert isinstance(alarm, act.Alarm) and isinstance(letter, act.DeadLetter)
    assert alarm.text == f"intent mismatch: {intent.client_order_id}: side sell != buy"
    assert letter.fields["reason"] == "intent mismatch: side sell != buy"
    assert (letter.fields["stream"], letter.fields["entry_id"]) == ("tp:{binance:0}:signals", "7-0")
    assert letter.fields["signal_id"] == signal.signal_id
    assert core.counts["intent_mismatches"] == 1 and core.alarms == [alarm.text]
    for _ in range(20):
        core.on_stored(signal, intent, stored, outcome_known=False)
    assert len(core.alarms) == 10  # the newest alarms only


def test_no_market_price_reads_the_market_once_then_refuses() -> None:
    core = fresh_core(counts={})
    signal = make_signal(symbol="ETHUSDT", price="")
    assert core.on_signal(signal, T0) == [act.LoadMarket("ETHUSDT")]
    assert core.counts.get("market_refusals", 0) == 0
    [reject] = core.on_signal(signal, T0, market_loaded=True)
    assert isinstance(reject, act.Reject) and reject.reason.startswith(
        "no market price for ETHUSDT"
    )
    assert core.counts["market_refusals"] == 1
    assert core.inflight == set()
    # Read in time, the market lets it through.
    core.market.see_trade("ETHUSDT", "3000", T0)
    assert core.on_signal(signal, T0, market_loaded=True) == [
        act.RecordIntent(build_intent(signal, ts_intent=T0))
    ]


def test_a_view_older_than_the_signal_is_read_again_before_a_band_refusal() -> None:
    # A spike: the signal's trade is 170 bps above the last price the background read saw.
    core = fresh_core(settings=Settings(price_band_bps="100"))
    signal = make_signal(price="62851", ts_recv=T0)
    assert core.on_signal(signal, T0) == [act.LoadMarket("BTCUSDT")]
    core.market.see_trade("BTCUSDT", "62851", T0)  # what the read finds: the signal's own trade
    assert core.on_signal(signal, T0, market_loaded=True) == [
        act.RecordIntent(build_intent(signal, ts_intent=T0))
    ]
    # Read and still off the band (a made-up price): refused, once.
    core = fresh_core(settings=Settings(price_band_bps="100"))
    assert core.on_signal(signal, T0) == [act.LoadMarket("BTCUSDT")]
    [reject] = core.on_signal(signal, T0, market_loaded=True)
    assert isinstance(reject, act.Reject) and reject.reason.startswith("price band")
    # A signal older than the view is judged on the view at once.
    core = fresh_core(settings=Settings(price_band_bps="100"))
    [reject] = core.on_signal(make_signal(price="62851", ts_recv=T0 - 2 * S), T0)
    assert isinstance(reject, act.Reject) and reject.reason.startswith("price band")


def test_a_stale_market_or_a_price_off_the_band_is_refused() -> None:
    core = fresh_core(settings=Settings(max_price_age_s=10.0, price_band_bps="100"))
    [reject] = core.on_signal(make_signal(price="70000"), T0, market_loaded=True)
    assert isinstance(reject, act.Reject) and reject.reason.startswith("price band")
    [reject] = core.on_signal(make_signal(), T0 + 30 * S, market_loaded=True)
    assert isinstance(reject, act.Reject) and "31.0 s old" in reject.reason


def test_the_order_rate_is_limited_on_the_time_fed_in() -> None:
    core = fresh_core(settings=Settings(max_orders_per_s=1.0))
    first = core.on_signal(make_signal(signal_id="a"), T0)
    assert [type(a) for a in first] == [act.RecordIntent]
    [reject] = core.on_signal(make_signal(signal_id="b"), T0)
    assert isinstance(reject, act.Reject) and reject.reason.startswith("order rate limit")
    assert [type(a) for a in core.on_signal(make_signal(signal_id="c"), T0 + 2 * S)] == [
        act.RecordIntent
    ]


def test_the_kill_switch_refuses_and_cancels_every_working_order() -> None:
    core = fresh_core()
    btc = working(core, make_signal(signal_id="w1"), order_id="1")
    eth = working(core, make_signal(signal_id="w2", symbol="ETHUSDT"), order_id="2")
    busy = working(core, make_signal(signal_id="w3"), order_id="3")
    core.inflight.add(busy.client_order_id)  # a request under way: left alone
    assert core.on_kill_switch(True) == [act.RecordEvent("kill_switch", {"on": "1"})]
    assert core.on_kill_switch(True) == []  # no change, nothing recorded
    signal = make_signal(signal_id="new")
    assert core.on_signal(signal, T0) == [
        act.Reject(build_intent(signal, ts_intent=T0), "kill switch is on"),
        act.Cancel(btc.client_order_id, "kill switch"),
        act.Cancel(eth.client_order_id, "kill switch"),
    ]
    assert core.on_tick(T0) == [
        act.Cancel(btc.client_order_id, "kill switch"),
        act.Cancel(eth.client_order_id, "kill switch"),
    ]
    assert core.on_kill_switch(False) == [act.RecordEvent("kill_switch", {"on": "0"})]
    assert core.on_tick(T0) == []


def test_a_position_at_its_limit_cancels_the_orders_that_would_grow_it() -> None:
    core = fresh_core()
    core.tracker.book.fill("BTCUSDT", Decimal("0.002"), Decimal("123.6"))
    grow = working(core, make_signal(signal_id="g"), order_id="1")
    shrink = working(core, make_signal(signal_id="s", side="sell"), order_id="2")
    assert core.on_tick(T0) == [act.Cancel(grow.client_order_id, "position limit")]
    signal = make_signal(signal_id="more")
    [reject, cancel] = core.on_signal(signal, T0)
    assert isinstance(reject, act.Reject) and reject.reason.startswith("position limit")
    assert cancel == act.Cancel(grow.client_order_id, "position limit")
    assert shrink.client_order_id not in {c.client_order_id for c in core.on_tick(T0)}


def test_a_cancel_signal_records_itself_and_cancels_the_symbols_working_orders() -> None:
    core = fresh_core(counts={})
    mine = working(core, make_signal(signal_id="w1"), order_id="1")
    working(core, make_signal(signal_id="w2", symbol="ETHUSDT"), order_id="2")
    signal = make_signal(signal_id="c1", action="cancel", reason="rapid move")
    assert core.on_signal(signal, T0) == [
        act.RecordEvent(
            "cancel_signal",
            {
                "signal_id": "c1",
                "symbol": "BTCUSDT",
                "reason": "rapid move",
                "orders": mine.client_order_id,
            },
        ),
        act.Cancel(mine.client_order_id, "signal c1", wait=True),
    ]
    assert core.counts["cancel_signals"] == 1


def test_cancels_of_one_order_are_paced_on_the_time_fed_in() -> None:
    core = fresh_core(counts={})
    assert core.may_cancel("tp-1", T0)
    assert not core.may_cancel("tp-1", T0 + S)  # tried a second ago
    assert core.may_cancel("tp-1", T0 + 3 * S)
    core.inflight.add("tp-2")
    assert not core.may_cancel("tp-2", T0)  # a request under way: left alone
    assert core.counts["cancels_sent"] == 2


INTENT = build_intent(make_signal(), ts_intent=T0)
ORDER = {"symbol": "BTCUSDT", "orderId": 7, "status": "FILLED", "executedQty": "0.001"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (VenueUnavailable("down"), [act.Retry()]),
        (RateLimited("slow", retry_after_s=3.0), [act.Retry(at_least_s=3.0)]),
        (AmbiguousOutcome("timeout"), [act.Resolve(INTENT, source="ambiguous")]),
        (DuplicateOrder("dup"), [act.Resolve(INTENT, source="ambiguous")]),
        (
            OrderRejected("no money", code=-2010),
            [
                act.Record(
                    INTENT,
                    "rejected",
                    {"reason": "no money", "stage": "venue", "code": "-2010"},
                    settle=True,
                )
            ],
        ),
        (ORDER, [act.RecordResult(INTENT, ORDER, source="place")]),
    ],
)
def test_the_venues_answer_to_an_order_becomes_actions(answer: Any, expected: list[Any]) -> None:
    core = fresh_core(counts={})
    assert core.on_answer(INTENT, answer, sent_ns=T0 + 5_000_000, ts_event=T0) == expected
    sent = not isinstance(answer, (VenueUnavailable, RateLimited))
    assert core.counts.get("orders_sent", 0) == sent
    assert core.last_order_latency_ms == (5.0 if sent else None)


def test_a_refused_key_settles_the_order_and_stops_the_stage() -> None:
    error = AuthError("bad key")
    actions = fresh_core().on_answer(INTENT, error, sent_ns=T0, ts_event=T0)
    assert actions == [
        act.Record(INTENT, "rejected", {"reason": "bad key", "stage": "venue"}, settle=True),
        act.Fail(error),
    ]


def _places_again_once(core: TraderCore, answer: OrderNotFound, at: int, source: str) -> None:
    """``answer`` to a lookup at ``at`` places INTENT again, once, stamped ``at``."""
    reason = f"the venue never got the decision ({answer}): placing it now, once"
    extra = {"reason": reason, "source": source, "placed_again_ns": str(at)}
    assert core.on_lookup(INTENT, answer, now_ns=at, source=source, failures=0) == [
        act.Record(INTENT, "placed_again", extra),
        act.Send(dataclasses.replace(INTENT, ts_intent=at)),
    ]
    assert core.counts["placed_again"] == 1


def test_no_such_order_where_ids_repeat_waits_for_the_window_then_places_it_once() -> None:
    """Binance takes a second order under a client id once the first is gone: "no such order"
    proves the decision never placed only when no copy of its request can still arrive."""
    core = fresh_core(counts={}, recv_window_ms=5000)  # max_price_age_s: 10 (the default)
    assert not core.unique_client_ids
    missing = OrderNotFound("unknown order")
    early = core.on_lookup(
        INTENT, missing, now_ns=INTENT.ts_intent + S, source="ambiguous", failures=0
    )
    assert early == [act.Retry(at_least_s=2.0, backoff=False)]
    # Past the receive window (+ the skew margin): the venue never got it; it is still valid.
    at = INTENT.ts_intent + 6 * S
    _places_again_once(core, missing, at, "ambiguous")
    # Its own request may be on its way for a receive window: wait, do not place a third time.
    soon = core.on_lookup(INTENT, missing, now_ns=at + 3 * S, source="ambiguous", failures=0)
    assert [type(a) for a in soon] == [act.Retry] and "not_executed" not in core.counts
    late = at + 5 * S + SKEW_MARGIN_MS * MS
    assert core.on_lookup(INTENT, missing, now_ns=late, source="ambiguous", failures=0) == [
        act.Record(
            INTENT,
            "not_found",
            {"reason": "the venue has no such order: unknown order", "source": "ambiguous"},
            settle=True,
        ),
        act.DeadLetter(
            {
                "reason": "decision not executed (ambiguous): the venue has no such order: "
                "unknown order; it is not sent again",
                "client_order_id": INTENT.client_order_id,
                "signal_id": INTENT.signal_id,
                "intent": orjson.dumps(INTENT.to_fields()).decode(),
            }
        ),
    ]
    assert core.counts == {"placed_again": 1, "not_executed": 1}


@pytest.mark.parametrize("unique", [False, True])
def test_a_decision_placed_again_by_an_earlier_run_is_not_placed_a_third_time(
    unique: bool,
) -> None:
    core = fresh_core(counts={}, recv_window_ms=5000)
    core.unique_client_ids = unique
    at = INTENT.ts_intent + 6 * S
    core.placed_again[INTENT.client_order_id] = at  # what the router reads from the intent key
    missing = OrderNotFound("unknown order")
    soon = core.on_lookup(INTENT, missing, now_ns=at + S, source="restart", failures=0)
    assert [type(a) for a in soon] == [act.Retry]
    late = at + 6 * S
    settled = core.on_lookup(INTENT, missing, now_ns=late, source="restart", failures=0)
    assert [type(a) for a in settled] == [act.Record, act.DeadLetter]
    assert "placed_again" not in core.counts


def test_with_the_kill_switch_on_a_decision_never_placed_is_settled_not_placed() -> None:
    core = fresh_core(counts={}, recv_window_ms=5000)
    core.kill_switch = True
    missing = OrderNotFound("unknown order")
    at = INTENT.ts_intent + 6 * S
    settled = core.on_lookup(INTENT, missing, now_ns=at, source="restart", failures=0)
    assert [type(a) for a in settled] == [act.Record, act.DeadLetter]
    assert isinstance(settled[1], act.DeadLetter)
    assert settled[1].fields["reason"].endswith("; the kill switch is on; it is not sent again")
    assert "placed_again" not in core.counts


def test_a_decision_the_venue_never_got_is_placed_once_while_it_is_still_valid() -> None:
    core = fresh_core(counts={}, recv_window_ms=5000)  # max_price_age_s: 10 (the default)
    core.unique_client_ids = True  # the venue refuses a second order under one id (IBKR)
    missing = OrderNotFound("no order with cOID")
    at = INTENT.ts_intent + 7 * S  # a restart after a kill: past the receive window
    cancelling = core.on_lookup(INTENT, OrderNotFound("x"), now_ns=at, source="cancel", failures=0)
    assert act.Send(INTENT) not in cancelling  # a decision the trader cancels is not placed
    core.counts.clear()
    _places_again_once(core, missing, at, "restart")
    # The same answer while the new order may still be on its way (within the receive window
    # after placing it again) waits: settling it now would dead-letter an order being placed.
    soon = core.on_lookup(INTENT, missing, now_ns=at + S, source="ambiguous", failures=0)
    assert [type(a) for a in soon] == [act.Retry] and "not_executed" not in core.counts
    # Once: past that window, the same answer settles it as it always did.
    late = at + 5 * S + SKEW_MARGIN_MS * MS + 1
    again = core.on_lookup(INTENT, missing, now_ns=late, source="ambiguous", failures=0)
    assert [type(a) for a in again] == [act.Record, act.DeadLetter]
    assert isinstance(again[0], act.Record) and again[0].event == "not_found"
    assert core.counts["placed_again"] == 1 and core.counts["not_executed"] == 1


@pytest.mark.parametrize("unique", [False, True])
def test_a_decision_older_than_the_market_age_limit_is_not_placed_but_dead_lettered(
    unique: bool,
) -> None:
    core = fresh_core(counts={}, recv_window_ms=5000)
    core.unique_client_ids = unique
    missing = OrderNotFound("no order with cOID")
    late = core.on_lookup(
        INTENT, missing, now_ns=INTENT.ts_intent + 11 * S, source="restart", failures=0
    )
    assert [type(a) for a in late] == [act.Record, act.DeadLetter]
    assert isinstance(late[1], act.DeadLetter)
    assert "too old to place (11.0 s)" in late[1].fields["reason"]
    assert "placed_again" not in core.counts


def test_lookups_that_say_nothing_end_as_unknown_after_the_attempts() -> None:
    core = fresh_core(counts={}, status_attempts=3)
    nothing = AmbiguousOutcome("timeout")
    for failures in range(2):
        assert core.on_lookup(INTENT, nothing, now_ns=T0, source="s", failures=failures) == [
            act.Retry(failed=True)
        ]
    assert core.on_lookup(INTENT, nothing, now_ns=T0, source="s", failures=2) == [
        act.Record(INTENT, "unknown", {"reason": "timeout", "source": "s"})
    ]
    assert core.counts["unresolved"] == 1
    found = core.on_lookup(INTENT, ORDER, now_ns=T0, source="s", failures=0)
    assert found == [act.RecordResult(INTENT, ORDER, source="status:s")]


def test_the_venues_answer_to_a_cancel_becomes_actions() -> None:
    core = fresh_core(counts={})
    unclear = (OrderNotFound,)
    gone = OrderNotFound("not open")
    assert core.on_cancel_answer(INTENT, gone, unclear=unclear) == [
        act.Resolve(INTENT, source="cancel")
    ]
    refused = OrderRejected("too late")
    assert core.on_cancel_answer(INTENT, refused, unclear=unclear) == [
        act.Record(INTENT, "cancel_rejected", {"reason": "too late"})
    ]
    assert core.on_cancel_answer(INTENT, ORDER, unclear=unclear) == [
        act.RecordResult(INTENT, ORDER, source="cancel", event="canceled")
    ]
    assert core.counts["cancels"] == 1
    slow = RateLimited("slow", retry_after_s=0.0)
    assert core.on_cancel_answer(INTENT, slow, unclear=unclear) == [
        act.Retry(at_least_s=0.1, backoff=False)
    ]


def test_an_order_update_is_applied_or_recorded_as_is() -> None:
    core = fresh_core(counts={})
    update = build_order_update(
        client_order_id=INTENT.client_order_id, order_id="7", trade_id="99", ts_event=T0, ts_recv=T0
    )
    fields = {k.encode(): v.encode() for k, v in update.to_fields().items()}
    [apply] = core.on_update(fields)
    assert isinstance(apply, act.ApplyUpdate) and apply.update == update
    assert apply.record["event"] == "update"
    [apply] = core.on_update({b"client_order_id": b"x"})
    assert isinstance(apply, act.ApplyUpdate) and apply.update is None
    assert apply.record == {"client_order_id": "x", "event": "update"}
    assert core.counts["updates"] == 2


def test_a_reconciliation_reports_what_changed_at_the_venue() -> None:
    before = OrderState("tp-1", "BTCUSDT", "buy", qty="0.001", order_id="7")
    after = OrderState("tp-1", "BTCUSDT", "buy", qty="0.001", order_id="7", status="FILLED",
                       filled_qty="0.001")  # fmt: skip
    entry = discrepancy("tp-1", before, after, reason="periodic", tracked=True)
    assert entry is not None and entry["kind"] == "state_changed" and entry["terminal"] == "1"
    assert discrepancy("tp-1", before, before, reason="periodic", tracked=True) is None
    orphan = discrepancy("tp-1", before, None, reason="start", tracked=False)
    assert orphan is not None and orphan["kind"] == "orphan_intent"
    assert discrepancy("tp-1", before, None, reason="start", tracked=True) is None  # unresolved
