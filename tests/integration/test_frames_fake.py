"""DataFrame readers on fakeredis: typing, time index, range filter, latest bar revision."""

from __future__ import annotations

import asyncio

import fakeredis
import pandas as pd
import pytest

from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.tools import frames

SETTINGS = Settings(namespace="frm", symbols=("BTCUSDT", "ETHUSDT"), instance="t")
K = SETTINGS.keys
P = Partition("binance", 0)
T0 = 1_723_161_253_000_000_000
S = 1_000_000_000


def trade(i: int, symbol: str = "BTCUSDT") -> dict[str, str]:
    return {"v": "1", "venue": "binance", "symbol": symbol, "trade_id": str(i),
            "price": f"6173{i}.63000000", "qty": "0.00100000", "side": "buy",
            "ts_event": str(T0 + i * S), "ts_recv": str(T0 + i * S + 5), "ts_proc": "",
            "src": f"{i}-0"}  # fmt: skip


def bar(ts: int, close: str, revision: int, final: str) -> dict[str, str]:
    return {"v": "1", "venue": "binance", "symbol": "BTCUSDT", "interval": "1m",
            "ts_open": str(ts), "open": "1", "high": "3", "low": "0.5", "close": close,
            "volume": "2.5", "trades": "4", "first_trade_id": "1", "last_trade_id": "4",
            "final": final, "revision": str(revision), "ts_event": str(ts)}  # fmt: skip


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_trades_are_typed_time_indexed_and_filtered() -> None:
    async def go() -> pd.DataFrame:
        r = fakeredis.FakeAsyncRedis()
        frames.PAGE = 2  # read in several pages
        for i in range(5):
            await r.xadd(K.trades(P), trade(i))
        await r.xadd(K.trades(P), trade(9, "ETHUSDT"))
        return await frames.read_trades(
            r, SETTINGS, "BTCUSDT", T0 + S, pd.Timestamp(T0 + 4 * S, tz="UTC")
        )

    try:
        df = run(go())
    finally:
        frames.PAGE = 5000
    assert list(df["trade_id"]) == ["1", "2", "3"]
    assert df.index.name == "ts_event" and str(df.index.tz) == "UTC"
    assert df["price"].dtype == "float64" and df["price"].iloc[0] == pytest.approx(61731.63)
    assert df["ts_recv"].iloc[0] == pd.Timestamp(T0 + S + 5, tz="UTC")
    assert df["ts_proc"].isna().all()
    assert "v" not in df.columns


def test_bars_keep_the_latest_revision_of_each_bar() -> None:
    async def go() -> pd.DataFrame:
        r = fakeredis.FakeAsyncRedis()
        stream = K.bars(P, "1m")
        await r.xadd(stream, bar(T0, "1.5", 0, "0"))
        await r.xadd(stream, bar(T0, "2", 0, "1"))
        await r.xadd(stream, bar(T0 + 60 * S, "2.5", 0, "0"))
        await r.xadd(stream, bar(T0, "2.2", 1, "1"))  # a revision of a final bar
        return await frames.read_bars(r, SETTINGS, "BTCUSDT", interval="1m")

    df = run(go())
    assert list(df["close"]) == [2.2, 2.5]
    assert list(df["final"]) == [True, False] and list(df["revision"]) == [1, 0]
    assert df["trades"].dtype == "int64" and df.index.name == "ts_open"


def test_orders_positions_and_empty_streams() -> None:
    async def go() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        r = fakeredis.FakeAsyncRedis()
        orders = K.orders("binance")
        await r.xadd(orders, {"event": "intent", "client_order_id": "a", "symbol": "BTCUSDT",
                              "qty": "0.001", "ts": str(T0), "ts_intent": str(T0)})  # fmt: skip
        fill = {"event": "update", "client_order_id": "a", "symbol": "BTCUSDT",
                "last_price": "61000.5", "status": "FILLED", "ts": str(T0 + 1)}  # fmt: skip
        await r.xadd(orders, fill)
        await r.xadd(orders, {"event": "intent", "client_order_id": "b", "symbol": "ETHUSDT",
                              "ts": str(T0 + 2)})  # fmt: skip
        held = {"BTCUSDT": "0.002", "BTCUSDT:avg_cost": "61000", "BTCUSDT:realized_pnl": "-0.5"}
        await r.hset(K.positions("binance"), mapping=held)
        return (
            await frames.read_orders(r, SETTINGS, "BTCUSDT"),
            await frames.read_positions(r, SETTINGS),
            await frames.read_quotes(r, SETTINGS, "BTCUSDT"),
        )

    orders, positions, quotes = run(go())
    assert list(orders["event"]) == ["intent", "update"] and orders.index.name == "ts"
    assert orders["last_price"].iloc[1] == 61000.5 and orders["qty"].iloc[0] == 0.001
    assert positions.loc["BTCUSDT", "position"] == 0.002
    assert pd.isna(positions.loc["BTCUSDT", "mark_price"])
    assert quotes.empty and isinstance(quotes.index, pd.DatetimeIndex)


def test_times_accept_iso_text_datetimes_and_nanoseconds() -> None:
    assert frames.to_ns("2024-08-09T00:00:00") == 1_723_161_600_000_000_000
    assert frames.to_ns(pd.Timestamp("2024-08-09", tz="UTC")) == 1_723_161_600_000_000_000
    assert frames.to_ns(5) == 5 and frames.to_ns(None) is None


def test_read_kind_dispatches_and_rejects_unknown_kinds() -> None:
    r = fakeredis.FakeAsyncRedis()
    with pytest.raises(ValueError, match="needs a symbol"):
        run(frames.read_kind(r, SETTINGS, "bars1m", None))
    with pytest.raises(ValueError, match="unknown kind"):
        run(frames.read_kind(r, SETTINGS, "candles", "BTCUSDT"))
