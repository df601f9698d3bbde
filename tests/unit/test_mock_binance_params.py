"""The Binance mock words a bad integer parameter the same way on every endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from tickpipe.mock_ws.binance.feed import MarketFeed
from tickpipe.mock_ws.binance.ws_market import market_result
from tickpipe.mock_ws.history import all_orders, my_trades
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.order_model import OrderRejected

LISTED = ("BTCUSDT",)


def _refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(OrderRejected) as caught:
        call()
    return caught.value.code, str(caught.value)


@pytest.mark.parametrize("answer", [all_orders, my_trades])
def test_history_refuses_a_malformed_integer_as_market_data_does(answer: Any) -> None:
    feed = MarketFeed(MarketSim(LISTED, 1, 1.0), 1)
    market = _refusal(
        lambda: market_result(feed, "trades.recent", {"symbol": "BTCUSDT", "limit": "ten"}, 0)
    )
    history = _refusal(lambda: answer([], {"symbol": "BTCUSDT", "limit": "ten"}, LISTED))
    assert history == market
    assert market[0] == -1100 and "'^[0-9]{1,20}$'" in market[1]


@pytest.mark.parametrize("name", ["orderId", "startTime", "endTime"])
def test_history_refuses_a_negative_id_or_time(name: str) -> None:
    code, _ = _refusal(lambda: all_orders([], {"symbol": "BTCUSDT", name: "-5"}, LISTED))
    assert code == -1100
