"""IBKR message shapes -> common values: market data, private topics, orders and answers.

Shapes: the ``smd`` update is the WebSocket docs' example (protocols.md §4); the question and
the placed order are the Client Portal reference's ``POST /iserver/account/{acct}/orders``
answers (OrderReplyMessage: ``id``, ``message``, ``isSuppressed``, ``messageIds``; placed:
``order_id``, ``order_status``, ``encrypt_message``); the ``sor`` entry follows the live-orders
entry of ``/iserver/account/orders``.
"""

from __future__ import annotations

import pytest

from tests.builders import build_order_intent
from tickpipe.common.errors import (
    AmbiguousOutcome,
    AuthError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
)
from tickpipe.common.messages import BadMessage, L1Update
from tickpipe.common.schema import OrderIntent, OrderUpdate, RawFrame
from tickpipe.venues.ibkr.market import classify_messages
from tickpipe.venues.ibkr.orders import (
    AccountsFirst,
    Asked,
    Placed,
    classify,
    declined,
    order_body,
    read_answer,
)
from tickpipe.venues.ibkr.private import parse_private
from tickpipe.venues.ibkr.wire import parse_price, parse_size

TS = 1_700_000_000_000_000_000
DOC_SMD = (
    '{"31":"382.89","83":0.04,"6119":"q6","server_id":"q6","conid":265598,'
    '"_updated":1593524408296,"topic":"smd+265598"}'
)
FIRST_SMD = '{"conid":265598,"_updated":1593524408000,"topic":"smd+265598"}'
QUESTION = (
    '[{"id":"07a13a5a-4a48-44a5-bb25-5ab37b79186c","message":["The following order exceeds '
    'the price percentage limit of 3%. Are you sure you want to submit this order?"],'
    '"isSuppressed":false,"messageIds":["o163"]}]'
)
PLACED = '[{"order_id":"1234567890","order_status":"Submitted","encrypt_message":"1"}]'
SOR = (
    '{"topic":"sor","args":[{"acct":"DU1234567","conid":265598,"orderId":1234567890,'
    '"cashCcy":"USD","sizeAndFills":"2/2","orderDesc":"Bought 2 Market","description1":"AAPL",'
    '"ticker":"AAPL","secType":"STK","listingExchange":"NASDAQ.NMS","remainingQuantity":0.0,'
    '"filledQuantity":2.0,"totalSize":2.0,"companyName":"APPLE INC","status":"Filled",'
    '"origOrderType":"MARKET","orderType":"Market","order_ref":"tp-abc","side":"BUY",'
    '"timeInForce":"DAY","lastExecutionTime_r":1701700000000,"avgPrice":"190.25"}]}'
)


def frame(data: str, channel: str = "smd:AAPL") -> RawFrame:
    return RawFrame("ws", "ibkr", "c/1", 1, TS, data, channel)


def test_smd_update_from_the_docs_is_a_level1_update_of_its_changed_fields() -> None:
    (item,) = classify_messages("1-0", frame(DOC_SMD))
    assert item == L1Update("AAPL", 1593524408296, last_price="382.89", ts_recv=TS)


def test_first_update_with_only_conid_and_updated_is_counted_not_parsed() -> None:
    assert classify_messages("1-0", frame(FIRST_SMD)) == ["l1_empty"]


def test_prior_close_prefix_is_not_a_trade_and_halted_prefix_is_stripped() -> None:
    closed = DOC_SMD.replace('"382.89"', '"C382.89"')
    assert classify_messages("1-0", frame(closed)) == ["l1_empty"]
    assert parse_price("H190.10") == ("190.10", "H")
    assert parse_size("1,300") == "1300" and parse_size("1.2K") == "1200"


def test_smd_frame_without_its_symbol_channel_is_a_bad_message() -> None:
    (item,) = classify_messages("1-0", frame(DOC_SMD, channel="market"))
    assert isinstance(item, BadMessage)


def test_control_topics_are_replies_and_bulletins_are_counted() -> None:
    for data in (
        '{"message":"waiting for session"}',
        '{"topic":"system","hb":1593524408296}',
        '{"topic":"sts","args":{"authenticated":true}}',
        '{"topic":"system","success":"user1"}',
    ):
        assert classify_messages("1-0", frame(data, "market")) == ["replies"]
    assert classify_messages("1-0", frame('{"topic":"blt","args":[]}', "market")) == ["ignored:blt"]


def test_sor_entry_is_an_order_update_with_its_cumulative_fill() -> None:
    parsed = parse_private(frame(SOR, "private"))
    assert not isinstance(parsed, str)
    update, identity = parsed
    assert isinstance(update, OrderUpdate)
    assert (update.client_order_id, update.order_id, update.status) == (
        "tp-abc",
        "1234567890",
        "FILLED",
    )
    assert update.filled_qty == "2" and update.cum_quote == "380.5"
    assert identity == "ibkr|1234567890|Filled|2"
    assert parse_private(frame('{"topic":"sor","args":[]}', "private")) == "replies"


def intent(order_type: str = "MARKET", qty: str = "2") -> OrderIntent:
    """A buy of ``qty`` AAPL on IBKR (a LIMIT one at 190.5)."""
    return build_order_intent(
        client_order_id="tp-abc",
        signal_id="s1",
        venue="ibkr",
        symbol="AAPL",
        side="BUY",
        order_type=order_type,
        qty=qty,
        price="190.5" if order_type == "LIMIT" else None,
        ts_signal=TS,
        ts_intent=TS,
    )


def test_order_body_carries_the_client_order_id_as_coid() -> None:
    assert order_body(intent(), conid=265598, account="DU1") == {
        "orders": [
            {
                "acctId": "DU1",
                "conid": 265598,
                "cOID": "tp-abc",
                "orderType": "MKT",
                "side": "BUY",
                "quantity": 2,
                "tif": "DAY",
            }
        ]
    }
    limit = order_body(intent("LIMIT"), conid=265598, account="DU1")["orders"][0]
    assert limit["orderType"] == "LMT" and limit["price"] == 190.5


def test_answers_are_a_question_or_the_order() -> None:
    import orjson

    asked = read_answer(orjson.loads(QUESTION))
    assert isinstance(asked, Asked) and asked.message_ids == ("o163",)
    assert asked.reply_id == "07a13a5a-4a48-44a5-bb25-5ab37b79186c"
    assert read_answer(orjson.loads(PLACED)) == Placed("1234567890", "Submitted")


def test_only_allow_listed_questions_are_accepted() -> None:
    asked = Asked("r1", ("o163", "o383"), ("price limit?", "size limit?"))
    assert declined(asked, ["o163", "o383"]) == []
    assert declined(asked, ["o163"]) == ["o383: size limit?"]
    assert declined(asked, []) == ["o163: price limit?", "o383: size limit?"]
    assert declined(Asked("r2", (), ("unnamed?",)), ["o163"]) == ["unnamed?"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "not authenticated"}, AuthError),
        (429, {"error": "Too many requests"}, RateLimited),
        (503, {"error": "Service Unavailable"}, AmbiguousOutcome),
        (400, {"error": "Local order ID=tp-abc is already registered."}, DuplicateOrder),
        (400, {"error": "Please query /accounts first"}, AccountsFirst),
        (400, {"error": "OrderID 1 doesn't exist"}, OrderNotFound),
        (400, {"error": "Contract 1 not found"}, OrderRejected),
        (200, {"error": "Order was not submitted"}, OrderRejected),
    ],
)
def test_answers_classify_into_common_errors(status: int, body: object, error: type) -> None:
    with pytest.raises(error):
        classify(status, body, retry_after_s=1.0)
