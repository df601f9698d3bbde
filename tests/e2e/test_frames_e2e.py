"""The DataFrame readers against the real streams of an end-to-end run (real redis-server)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from tests.e2e.conftest import Processes, RedisServer, wait_for
from tickpipe.common.names import GROUP_PROCESSOR, GROUP_TRADER, Keys, Partition
from tickpipe.common.schema import decode_fields
from tickpipe.common.settings import Settings
from tickpipe.tools import frames

pytestmark = pytest.mark.e2e

NS = "frm"
KEYS = Keys(NS)
P = Partition("binance", 0)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _idle(client, stream: str, group: str) -> bool:  # type: ignore[no-untyped-def]
    for g in client.xinfo_groups(stream):
        name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
        if name == group:
            last = client.xinfo_stream(stream)["last-generated-id"]
            return int(g["pending"]) == 0 and g["last-delivered-id"] == last
    return False


def _entries(client, stream: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return [decode_fields(f) for _, f in client.xrange(stream)]


def test_frames_read_a_real_run(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    processes.env.update(BINANCE_API_KEY="frames-key", BINANCE_API_SECRET="frames-secret")
    _, port = processes.start_mock("--seed", "3", "--rate", "40", "--symbols", ",".join(SYMBOLS))
    processes.env.update(
        REDIS_URL=redis_server.url, TICKPIPE_NAMESPACE=NS, TICKPIPE_SYMBOLS=",".join(SYMBOLS),
        TICKPIPE_BINANCE_WS_URL=f"ws://127.0.0.1:{port}",
        TICKPIPE_BINANCE_WS_API_URL=f"ws://127.0.0.1:{port}/ws-api/v3",
        TICKPIPE_BINANCE_REST_URL=f"http://127.0.0.1:{port}",
        TICKPIPE_HYSTERESIS_BPS="1",
    )  # fmt: skip
    ingestor = processes.start("ingestor", "-m", "tickpipe.ingestor")
    processor = processes.start("processor", "-m", "tickpipe.processor")
    trader = processes.start("trader", "-m", "tickpipe.trader")
    client = redis_server.client()
    wait_for(lambda: client.xlen(KEYS.trades(P)) >= 200, timeout_s=40, what="200 trades")
    orders_stream = KEYS.orders("binance")
    wait_for(lambda: any(f.get("event") == "update" for f in _entries(client, orders_stream)),
             timeout_s=40, what="an order update in the orders stream")  # fmt: skip
    assert ingestor.stop() == 0, ingestor.tail()
    wait_for(lambda: _idle(client, KEYS.raw(P), GROUP_PROCESSOR), timeout_s=30, what="raw drained")
    wait_for(lambda: _idle(client, KEYS.signals(P), GROUP_TRADER), timeout_s=30,
             what="signals drained")  # fmt: skip
    wait_for(lambda: _idle(client, KEYS.private_raw("binance"), GROUP_PROCESSOR), timeout_s=30,
             what="private stream drained")  # fmt: skip
    assert processor.stop() == 0, processor.tail()
    assert trader.stop() == 0, trader.tail()

    settings = Settings(redis_url=redis_server.url, namespace=NS, symbols=SYMBOLS, instance="t")
    raw_trades = [f for f in _entries(client, KEYS.trades(P)) if f["symbol"] == "BTCUSDT"]

    # Trades: every entry of the symbol, typed, indexed by exchange time.
    trades = frames.trades(settings, "BTCUSDT")
    assert len(trades) == len(raw_trades) > 50
    assert trades.index.is_monotonic_increasing and str(trades.index.tz) == "UTC"
    by_id = {f["trade_id"]: f for f in raw_trades}
    for trade_id, price, qty in trades[["trade_id", "price", "qty"]].itertuples(index=False):
        assert price == float(by_id[trade_id]["price"]) and qty == float(by_id[trade_id]["qty"])
    middle = trades.index[len(trades) // 2]
    later = frames.trades(settings, "BTCUSDT", start=middle)
    earlier = frames.trades(settings, "BTCUSDT", end=middle)
    assert len(later) + len(earlier) == len(trades) and later.index.min() == middle

    # 1-second bars: the latest revision of each; their volumes add up to the trades' quantities.
    bars = frames.bars(settings, "BTCUSDT", interval="1s")
    assert bars.index.is_unique and len(bars) >= 2
    total = sum(Decimal(f["qty"]) for f in raw_trades)
    assert bars["volume"].sum() == pytest.approx(float(total), rel=1e-9)
    first = bars.iloc[0]
    inside = trades[
        (trades.index >= bars.index[0]) & (trades.index < bars.index[0] + pd.Timedelta("1s"))
    ]
    assert (first["open"], first["close"]) == (inside["price"].iloc[0], inside["price"].iloc[-1])
    assert (first["high"], first["low"]) == (inside["price"].max(), inside["price"].min())

    # Orders and positions as the trader recorded them.
    raw_orders = [  # the filters the trader loaded are on record there too, and not orders
        f for f in _entries(client, KEYS.orders("binance")) if f.get("event") != "instruments"
    ]
    orders = frames.orders(settings)
    assert len(orders) == len(raw_orders)
    assert set(orders["client_order_id"]) == {f["client_order_id"] for f in raw_orders}
    assert (orders["event"] == "intent").sum() == sum(f["event"] == "intent" for f in raw_orders)
    held = decode_fields(client.hgetall(KEYS.positions("binance")))
    positions = frames.positions(settings)
    for symbol in SYMBOLS:
        if symbol in held:
            assert positions.loc[symbol, "position"] == float(held[symbol])
