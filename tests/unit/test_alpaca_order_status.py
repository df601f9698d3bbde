"""Alpaca order statuses read alike from the trading stream and from a REST answer."""

from __future__ import annotations

from typing import Any

import pytest

from tickpipe.venues.alpaca import wire
from tickpipe.venues.alpaca.orders import order_result

# Every order status Alpaca's Trading API documents (protocols.md §3).
STATUSES = [
    "new",
    "accepted",
    "pending_new",
    "accepted_for_bidding",
    "partially_filled",
    "filled",
    "done_for_day",
    "canceled",
    "replaced",
    "pending_cancel",
    "pending_replace",
    "expired",
    "stopped",
    "rejected",
    "suspended",
    "calculated",
    "held",
    "pending_review",
]


def _order(status: str) -> dict[str, Any]:
    return {
        "id": "o-1",
        "client_order_id": "tp-abc",
        "symbol": "FAKEPACA",
        "asset_class": "us_equity",
        "qty": "10",
        "filled_qty": "0",
        "type": "limit",
        "side": "buy",
        "limit_price": "100.5",
        "status": status,
        "updated_at": "2022-04-19T17:45:05.024916716Z",
    }


@pytest.mark.parametrize("status", STATUSES)
def test_a_status_reads_the_same_from_the_stream_and_from_rest(status: str) -> None:
    streamed = wire.parse_trade_update({"event": "new", "order": _order(status)}, ts_recv=1)
    answered = order_result(_order(status))
    assert streamed.status == answered["status"]


def test_an_order_held_for_the_auction_is_live() -> None:
    streamed = wire.parse_trade_update(
        {"event": "new", "order": _order("accepted_for_bidding")}, ts_recv=1
    )
    assert streamed.status == "NEW"
