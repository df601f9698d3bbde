"""Unit tests of the mock's klines and rolling 24-hour tickers (pure)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from mock_ws.binance.candles import CandleSeries, RollingTicker, period_start
from mock_ws.binance.feed import MarketFeed
from mock_ws.market import MarketSim

D = Decimal
T0 = int(dt.datetime(2026, 11, 25, 13, 37, 12, tzinfo=dt.UTC).timestamp() * 1000)  # Wed


def ms(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp() * 1000)


def test_period_boundaries() -> None:
    assert period_start("1m", T0) == ms(2026, 11, 25, 13, 37)
    assert period_start("15m", T0) == ms(2026, 11, 25, 13, 30)
    assert period_start("1d", T0) == ms(2026, 11, 25)
    assert period_start("1w", T0) == ms(2026, 11, 23)  # Monday
    assert period_start("1M", T0) == ms(2026, 11, 1)
    assert period_start("1M", T0, step=2) == ms(2027, 1, 1)
    assert period_start("1d", T0, 8 * 3_600_000) == ms(2026, 11, 24, 16)  # 00:00 at +08:00
    assert period_start("1s", T0 + 999) == T0


def test_candles_roll_and_fill_idle_periods() -> None:
    series = CandleSeries("1m")
    start = ms(2026, 11, 25, 13, 37)
    series.add(start + 1000, D("10"), D("1"), 1, False)
    series.add(start + 2000, D("12"), D("2"), 2, True)
    series.add(start + 3000, D("9"), D("1"), 3, False)
    assert series.current is not None
    k = series.current.payload("BTCUSDT", "1m", False)
    assert (k["o"], k["h"], k["l"], k["c"]) == (
        "10.00000000",
        "12.00000000",
        "9.00000000",
        "9.00000000",
    )
    assert (k["f"], k["L"], k["n"], k["v"], k["V"]) == (1, 3, 3, "4.00000000", "2.00000000")
    assert k["t"] == start and k["T"] == start + 59_999 and k["x"] is False
    closed = series.roll(start + 125_000)
    assert [c.open_ms for c in closed] == [start, start + 60_000]
    idle = closed[1]
    assert (idle.open, idle.close, idle.trades, idle.first_id) == (D("9"), D("9"), 0, -1)
    rows = series.rows(None, None, 2)
    assert [r[0] for r in rows] == [start + 60_000, start + 120_000]
    assert series.rows(start, None, 1)[0][0] == start and len(rows[0]) == 12


def test_rolling_ticker_expires_high_and_low() -> None:
    ticker = RollingTicker(window_ms=10_000)
    ticker.add(0, D("50"), D("1"), 1)
    ticker.add(1000, D("40"), D("1"), 2)
    ticker.add(5000, D("45"), D("2"), 3)
    mini = ticker.mini("BTCUSDT", 6000)
    assert mini is not None and (mini["h"], mini["l"], mini["o"]) == (
        "50.00000000",
        "40.00000000",
        "50.00000000",
    )
    later = ticker.mini("BTCUSDT", 10_500)  # the first trade left the window
    assert later is not None and (later["h"], later["l"], later["v"]) == (
        "45.00000000",
        "40.00000000",
        "3.00000000",
    )
    bbo = {"b": "1", "B": "2", "a": "3", "A": "4"}
    full = ticker.full("BTCUSDT", 10_500, bbo)
    assert full is not None and (full["F"], full["L"], full["n"]) == (2, 3, 2)
    assert full["p"] == "5.00000000" and full["P"] == "12.500" and full["b"] == "1"
    assert ticker.mini("BTCUSDT", 100_000) is None


def test_second_events_send_klines_and_tickers_that_are_wanted() -> None:
    market = MarketSim(["BTCUSDT", "ETHUSDT"], seed=4, trades_per_s=50.0)
    feed = MarketFeed(market, 4)
    base_ns = T0 * 1_000_000
    market.trades_due(base_ns)
    feed.on_trades(market.trades_due(base_ns + 2 * 10**9), T0 + 2000)
    wanted = {
        "btcusdt@kline_1s",
        "btcusdt@kline_1m",
        "btcusdt@ticker",
        "!miniTicker@arr",
        "ethusdt@miniTicker",
        "btcusdt@kline_1h@+08:00",
    }
    odd = feed.second_events(T0 + 2100, 1, wanted)
    names = [e[0] for e in odd]
    assert "btcusdt@kline_1s" in names and "btcusdt@kline_1m" not in names
    finals = [e[1]["k"] for e in odd if e[0] == "btcusdt@kline_1s" and e[1]["k"]["x"]]
    assert finals and all(k["i"] == "1s" for k in finals)
    assert len(next(e[1] for e in odd if e[0] == "!miniTicker@arr")) == 2
    even = feed.second_events(T0 + 3100, 2, wanted)
    names = [e[0] for e in even]
    assert "btcusdt@kline_1m" in names and "!miniTicker@arr" not in names  # nothing changed
    ticker = next(e[1] for e in even if e[0] == "btcusdt@ticker")
    assert ticker["e"] == "24hrTicker" and ticker["n"] > 0
    assert feed.klines("BTCUSDT", "1m", None, None, 5)[-1][8] > 0
    market.trades_due(base_ns + 3 * 10**9)
    feed.on_trades(market.trades_due(base_ns + 4 * 10**9), T0 + 4000)
    plus8 = [e for e in feed.second_events(T0 + 4100, 4, wanted) if "+08:00" in e[0]]
    assert plus8 and plus8[0][1]["k"]["i"] == "1h"
