"""Unit tests for the Alpaca message flow built from simulated trades, and its history."""

from __future__ import annotations

import pytest

from tickpipe.mock_ws.alpaca.codec import Ts
from tickpipe.mock_ws.alpaca.marketdata import AlpacaMarket
from tickpipe.mock_ws.market import SimTrade

MIN = 60_000_000_000
T0 = 1_700_000_040_000_000_000  # 40 s past a whole minute
MS = 1_000_000


def sim_trade(symbol: str, trade_id: int, price: str, qty: str, at_ns: int) -> SimTrade:
    return SimTrade(symbol, trade_id, price, qty, at_ns // MS, trade_id % 2 == 0)


def test_stock_trade_yields_trade_and_quote_in_the_documented_shape() -> None:
    market = AlpacaMarket(("AAPL",))
    out = market.on_trades([sim_trade("AAPL", 7, "126.55000000", "2.70000000", T0)], T0)
    assert [(o.channel, o.symbol, o.message["T"]) for o in out] == [
        ("trades", "AAPL", "t"),
        ("quotes", "AAPL", "q"),
    ]
    trade = out[0].message
    assert trade == {"T": "t", "i": 7, "S": "AAPL", "x": "V", "p": 126.55, "s": 2,
                     "t": Ts(T0), "c": ["@"], "z": "C"}  # fmt: skip
    quote = out[1].message
    assert set(quote) == {"T", "S", "bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t"}
    assert quote["bp"] < 126.55 < quote["ap"]
    assert out[0].trade is not None and out[0].trade.trade_id == 7


def test_crypto_trade_has_taker_side_and_an_orderbook_update() -> None:
    market = AlpacaMarket(("BTC/USD",))
    out = market.on_trades([sim_trade("BTC/USD", 3, "61800.00", "0.00551", T0)], T0)
    trade, quote, book = (o.message for o in out)
    assert trade == {"T": "t", "S": "BTC/USD", "p": 61800.0, "s": 0.00551, "t": Ts(T0),
                     "i": 3, "tks": "B"}  # fmt: skip
    assert set(quote) == {"T", "S", "bp", "bs", "ap", "as", "t"}
    assert book["T"] == "o" and book["r"] is False and len(book["b"]) == len(book["a"]) == 1
    snapshot = market.orderbook_snapshot("BTC/USD", T0)
    assert snapshot is not None and snapshot["r"] is True and len(snapshot["b"]) == 40
    assert all(level["p"] < 61800 for level in snapshot["b"])
    assert market.orderbook_snapshot("AAPL", T0) is None


def test_minute_bar_and_daily_bar_close_with_the_minute() -> None:
    market = AlpacaMarket(("AAPL",))
    market.on_trades([sim_trade("AAPL", 1, "100", "3", T0)], T0)
    market.on_trades([sim_trade("AAPL", 2, "102", "1", T0 + 5_000 * MS)], T0 + 5_000 * MS)
    assert market.on_trades([], T0 + 10_000 * MS) == []
    running = market.history_bars("AAPL")
    assert len(running) == 1 and running[0]["n"] == 2
    minute_start = T0 - T0 % MIN
    out = market.on_trades([], minute_start + MIN)
    assert [o.message["T"] for o in out] == ["b", "d"]
    bar = out[0].message
    assert bar == {"T": "b", "S": "AAPL", "o": 100.0, "h": 102.0, "l": 100.0, "c": 102.0,
                   "v": 4, "t": Ts(minute_start), "n": 2, "vw": 100.5}  # fmt: skip
    assert out[1].message["t"] == Ts(T0 - T0 % (1440 * MIN))
    assert market.history_bars("AAPL") == [{k: v for k, v in bar.items() if k not in ("T", "S")}]


def test_injected_messages_follow_the_documented_shapes() -> None:
    market = AlpacaMarket(("AAPL", "BTC/USD"))
    market.on_trades([sim_trade("AAPL", 9, "100", "1", T0)], T0 + MIN)
    status = market.inject("status", "AAPL", T0)
    assert status.channel == "statuses"
    assert set(status.message) == {"T", "S", "sc", "sm", "rc", "rm", "t", "z"}
    correction = market.inject("correction", "AAPL", T0)
    assert correction.channel == "corrections" and correction.message["oi"] == 9
    assert set(correction.message) == {"T", "S", "x", "oi", "op", "os", "oc", "ci", "cp", "cs",
                                       "cc", "z", "t"}  # fmt: skip
    cancel = market.inject("cancel_error", "AAPL", T0)
    assert cancel.channel == "cancelErrors" and cancel.message["a"] == "C"
    updated = market.inject("updated_bar", "AAPL", T0)
    assert updated.channel == "updatedBars" and updated.message["T"] == "u"
    assert updated.message["v"] == 2 and market.history_bars("AAPL")[0]["v"] == 2
    with pytest.raises(ValueError):
        market.inject("correction", "BTC/USD", T0)
    with pytest.raises(ValueError):
        market.inject("weather", "AAPL", T0)
    with pytest.raises(KeyError):
        market.inject("status", "NOPE", T0)


def test_history_keeps_trades_in_order() -> None:
    market = AlpacaMarket(("AAPL",))
    trades = [sim_trade("AAPL", i, "100", "1", T0 + i * MS) for i in range(1, 4)]
    market.on_trades(trades, T0 + 4 * MS)
    assert [m["i"] for m in market.history_trades("AAPL")] == [1, 2, 3]
    assert market.history_trades("MSFT") == []
