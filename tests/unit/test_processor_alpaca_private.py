"""Alpaca trade_updates through the private lane's pure core: every event kind, JSON and msgpack."""

from __future__ import annotations

import base64
from typing import Any

import msgpack
import orjson
import pytest

from common.errors import DecodeError
from common.schema import RawFrame
from processor.private import VenueState, process_private_batch
from venues.alpaca import wire as alpaca

TS_RECV = 1_700_000_000_000_000_000
STAMP = "2022-04-19T17:45:05.024916716Z"
STAMP_NS = 1_650_390_305_024_916_716

# The docs' fill example (protocols.md §3.6).
FILL = (
    '{"stream":"trade_updates","data":{"event":"fill",'
    '"execution_id":"2f63ea93-423d-4169-b3f6-3fdafc10c418","order":{'
    '"id":"a5be8f5e-fdfa-41f5-a644-7a74fe947a8f",'
    '"client_order_id":"4642fd68-d59a-47d7-a9ac-e22f536828d1",'
    '"created_at":"2022-04-19T13:45:04.981350886-04:00",'
    '"updated_at":"2022-04-19T13:45:05.027690731-04:00",'
    '"submitted_at":"2022-04-19T13:45:04.980944666-04:00",'
    '"filled_at":"2022-04-19T17:45:05.024916716Z","expired_at":null,"canceled_at":null,'
    '"failed_at":null,"replaced_at":null,"replaced_by":null,"replaces":null,'
    '"asset_id":"1cf35270-99ee-44e2-a77f-6fab902c7f80","symbol":"SOLUSD","asset_class":"crypto",'
    '"notional":null,"qty":"1790.86","filled_qty":"1790.86","filled_avg_price":"105.8988475",'
    '"order_class":"","order_type":"market","type":"market","side":"sell","time_in_force":"gtc",'
    '"limit_price":null,"stop_price":null,"status":"filled","extended_hours":false,"legs":null,'
    '"trail_percent":null,"trail_price":null,"hwm":null,"cancel_requested_at":null},'
    '"position_qty":"0","price":"105.8988475","qty":"1790.86",'
    '"timestamp":"2022-04-19T17:45:05.024916716Z"}}'
)

# event -> (order status sent with it, mapped status, exec_type)
EVENTS = {
    "new": ("new", "NEW", "NEW"),
    "accepted": ("accepted", "NEW", "ACCEPTED"),
    "pending_new": ("pending_new", "NEW", "PENDING_NEW"),
    "partial_fill": ("partially_filled", "PARTIALLY_FILLED", "TRADE"),
    "fill": ("filled", "FILLED", "TRADE"),
    "canceled": ("canceled", "CANCELED", "CANCELED"),
    "done_for_day": ("done_for_day", "CANCELED", "DONE_FOR_DAY"),
    "expired": ("expired", "EXPIRED", "EXPIRED"),
    "rejected": ("rejected", "REJECTED", "REJECTED"),
    "replaced": ("replaced", "CANCELED", "REPLACED"),
    "pending_cancel": ("pending_cancel", "PENDING_CANCEL", "PENDING_CANCEL"),
    "pending_replace": ("pending_replace", "PENDING_REPLACE", "PENDING_REPLACE"),
    "stopped": ("stopped", "STOPPED", "STOPPED"),
    "suspended": ("suspended", "SUSPENDED", "SUSPENDED"),
    "calculated": ("calculated", "CALCULATED", "CALCULATED"),
    "order_replace_rejected": ("new", "NEW", "ORDER_REPLACE_REJECTED"),
    "order_cancel_rejected": ("new", "NEW", "ORDER_CANCEL_REJECTED"),
    "restated": ("new", "NEW", "RESTATED"),
}


def update(event: str, status: str, n: int = 0) -> dict[str, Any]:
    filled = event in ("fill", "partial_fill")
    data: dict[str, Any] = {
        "event": event,
        "timestamp": STAMP,
        "order": {
            "id": "o-1",
            "client_order_id": "tp-abc",
            "symbol": "FAKEPACA",
            "asset_class": "us_equity",
            "qty": "10",
            "filled_qty": "4" if filled else "0",
            "filled_avg_price": "100.25" if filled else None,
            "type": "limit",
            "side": "buy",
            "limit_price": "100.5",
            "status": status,
        },
    }
    if filled:
        data.update(execution_id=f"exec-{n}", price="100.25", qty="4", position_qty="4")
    return {"stream": "trade_updates", "data": data}


def frames(messages: list[dict[str, Any]], encode: str) -> list[tuple[str, RawFrame]]:
    out = []
    for n, message in enumerate(messages):
        if encode == "msgpack":
            data = base64.b64encode(msgpack.packb(message)).decode()
            frame = RawFrame("ws-binary", "alpaca", "t1", n, TS_RECV, data)
        else:
            frame = RawFrame("ws", "alpaca", "t1", n, TS_RECV, orjson.dumps(message).decode())
        out.append((f"{n + 1}-0", frame))
    return out


@pytest.mark.parametrize("encode", ["json", "msgpack"])
def test_every_event_kind_maps_status_and_exec_type(encode: str) -> None:
    messages = [update(e, s, n) for n, (e, (s, _, _)) in enumerate(EVENTS.items())]
    out = process_private_batch(VenueState("alpaca"), frames(messages, encode), 7)
    assert not out.dead_letters
    got = [(u.status, u.exec_type) for u in out.order_updates]
    assert got == [(status, exec_type) for _, status, exec_type in EVENTS.values()]
    fill = out.order_updates[list(EVENTS).index("fill")]
    assert (fill.venue, fill.symbol, fill.client_order_id, fill.order_id) == (
        "alpaca",
        "FAKEPACA",
        "tp-abc",
        "o-1",
    )
    assert (fill.side, fill.order_type, fill.qty, fill.price) == ("buy", "LIMIT", "10", "100.5")
    assert (fill.filled_qty, fill.last_qty, fill.last_price) == ("4", "4", "100.25")
    assert (fill.cum_quote, fill.trade_id, fill.ts_event) == ("401.00", "exec-4", STAMP_NS)
    assert (fill.ts_recv, fill.ts_proc) == (TS_RECV, 7)
    new = out.order_updates[0]
    assert (new.last_qty, new.last_price, new.cum_quote, new.trade_id) == ("0", "0", "0", "")


def test_docs_fill_example() -> None:
    entries = [("1-0", RawFrame("ws", "alpaca", "t1", 0, TS_RECV, FILL))]
    [fill] = process_private_batch(VenueState("alpaca"), entries, 1).order_updates
    assert (fill.symbol, fill.status, fill.exec_type, fill.order_type) == (
        "SOL/USD",
        "FILLED",
        "TRADE",
        "MARKET",
    )
    assert (fill.price, fill.qty, fill.last_price) == ("0", "1790.86", "105.8988475")
    assert fill.cum_quote == "189650.010033850"
    assert fill.trade_id == "2f63ea93-423d-4169-b3f6-3fdafc10c418"
    assert fill.client_order_id == "4642fd68-d59a-47d7-a9ac-e22f536828d1"


def test_repeats_are_dropped_and_survive_a_checkpoint() -> None:
    fill, new = update("fill", "filled", 1), update("new", "new")
    state = VenueState("alpaca")
    out = process_private_batch(state, frames([new, fill, fill, new], "json"), 1)
    assert [u.exec_type for u in out.order_updates] == ["NEW", "TRADE"]
    assert state.counters["duplicate_executions"] == 2
    restored = VenueState.from_bytes(state.to_bytes(), "alpaca")
    again = [(f"9-{n}", frame) for n, (_, frame) in enumerate(frames([fill, new], "msgpack"))]
    assert process_private_batch(restored, again, 1).order_updates == []


def test_session_frames_are_replies_and_bad_frames_dead_letters() -> None:
    messages: list[Any] = [
        {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}},
        {"stream": "listening", "data": {"streams": ["trade_updates"]}},
        {"action": "error", "data": {"error_message": "internal server error"}},
        {"stream": "account_updates", "data": {}},
        {"stream": "trade_updates", "data": {"event": "fill"}},
        {"stream": "trade_updates", "data": "x"},
        {"nothing": 1},
        [1, 2],
    ]
    state = VenueState("alpaca")
    entries = frames(messages, "json")
    entries.append(("20-0", RawFrame("ws-binary", "alpaca", "t1", 0, 1, "%%%")))
    out = process_private_batch(state, entries, 1)
    assert state.counters["replies"] == 3 and state.counters["ignored"] == 1
    reasons = [d.reason for d in out.dead_letters]
    assert len(reasons) == 5
    assert "'order'" in reasons[0] and "object" in reasons[1] and "no stream" in reasons[2]
    assert "object" in reasons[3] and "base64" in reasons[4]


def test_parse_trade_update_needs_an_order() -> None:
    with pytest.raises(DecodeError):
        alpaca.parse_trade_update({"event": "new", "order": "x"}, ts_recv=1)
    assert alpaca.map_status("held") == "HELD"
