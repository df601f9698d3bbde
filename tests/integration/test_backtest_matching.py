"""The backtest fills through the mock's matching engine against the recorded book.

* A MARKET order larger than the best level walks the book the recording holds at its arrival
  (real capture; the expected levels are read from the processor's book at that point).
* A resting LIMIT order waits behind the quantity visible at its price when it arrived: trades
  at its price fill it only beyond that queue, a shrinking level shortens the queue, a trade
  through its price fills the rest.
* The venue's instrument filters shape an order exactly as the trader does: the same signals
  go to the trader (against the in-process mock) and to the backtest, and are rounded or
  refused alike; ``--filters`` takes them from a saved ``exchangeInfo``.
* The example strategy's post-only orders rest or are refused, and its cancels cancel them, on
  a real capture.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import fakeredis
import orjson
import pytest

from tests.builders import build_signal
from tests.integration.test_trader_filters_mock import _wait_acks
from tests.integration.test_trader_mock import eth_streams, make_signal, mock_settings, wait_idle
from tests.integration.test_trader_shell import seed_market
from tests.realdata import BTCUSDT_CAPTURE
from tests.stages import stage_running
from tickpipe.common.schema import Signal, Trade, decode_fields
from tickpipe.common.settings import load_settings
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.binance.rest import symbol_info
from tickpipe.processor.books import OrderBook
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.records import BookTop
from tickpipe.processor.strategies import BOOK, SignalSpec, Strategy
from tickpipe.tools.backtest import entries_of_records, run_backtest
from tickpipe.tools.cli import main
from tickpipe.tools.fill_model import FillModel
from tickpipe.tools.ops import read_recording
from tickpipe.trader.shell import run

EXAMPLE = Path(__file__).parents[2] / "examples" / "momentum"
SWEEP_QTY = Decimal(12)


class Sweeper(Strategy):
    """Buy 12 BTC at market once, on the 20th live top of book."""

    name: ClassVar[str] = "sweeper"
    inputs: ClassVar[frozenset[str]] = frozenset({BOOK})

    def __init__(self) -> None:
        self.seen = 0

    def on_book(self, top: BookTop, ts_now: int) -> list[SignalSpec]:
        if top.status != "live":
            return []
        self.seen += 1
        if self.seen != 20:
            return []
        return [SignalSpec(top.symbol, "buy", str(SWEEP_QTY), "", "sweep", order_type="MARKET")]

    def to_state(self) -> Any:
        return self.seen

    def load_state(self, data: Any) -> None:
        self.seen = int(data)


def test_a_market_order_walks_the_recorded_book() -> None:
    settings = load_settings(
        {"TICKPIPE_STRATEGIES": "tests.integration.test_backtest_matching:Sweeper",
         "TICKPIPE_SYMBOLS": "BTCUSDT"}, dotenv_path=None,
    )  # fmt: skip
    records = list(read_recording(BTCUSDT_CAPTURE))[:3000]
    entries = list(entries_of_records(settings, records, conn="backtest"))
    result = run_backtest(settings, entries, latency_ms=10, out=io.StringIO())
    (signal,) = result.signals
    # Ground truth from the recording: the processor's book at the first event of the symbol
    # at or after the order's arrival (10 ms of event time after the top that caused it), its
    # top replaced by the last quote when that quote is newer than the book.
    arrive = signal.ts_event + 10_000_000
    state = PartitionState.from_settings(settings, "binance:0", "binance")
    asks: list[tuple[str, str]] = []
    caused, quote = False, None
    for _, entry_id, frame in entries:
        out = process_batch(state, [(entry_id, frame)], 0)
        quote = out.quotes[-1] if out.quotes else quote
        times = [t.ts_event for t in out.trades] + [t.ts_event for t in out.book_tops]
        if caused and any(t >= arrive for t in times):
            book = state.books.book("BTCUSDT")
            assert book is not None
            asks = [book.asks.levels[key] for key in sorted(book.asks.levels)]
            if quote is not None and int(quote.update_id) > book.last_update_id:
                best = Decimal(quote.ask_price)
                asks = [(quote.ask_price, quote.ask_qty)] + [
                    (p, q) for p, q in asks if Decimal(p) > best
                ]
            break
        caused = caused or any(s.signal_id == signal.signal_id for s in out.signals)
    assert Decimal(asks[0][1]) < SWEEP_QTY  # larger than the best level: it must walk
    expected, left = [], SWEEP_QTY
    for price, qty in asks:  # best first
        take = min(left, Decimal(qty))
        expected.append((Decimal(price), take))
        left -= take
        if left == 0:
            break
    fills = result.model.fills
    assert [(Decimal(f.price), Decimal(f.qty)) for f in fills] == expected, (fills, asks[:8])
    assert {f.liquidity for f in fills} == {"taker"}
    assert [f.status for f in fills] == ["PARTIALLY_FILLED"] * (len(fills) - 1) + ["FILLED"]
    assert result.counters["fills_without_book"] == 0


def _trade(price: str, qty: str, ts: int, trade_id: int) -> Trade:
    return Trade("binance", "BTCUSDT", str(trade_id), price, qty, "sell", ts, ts)


def _limit(signal_id: str, side: str, qty: str, price: str, ts: int) -> Signal:
    return build_signal(signal_id=signal_id, symbol="BTCUSDT", side=side, qty=qty, price=price,
                        order_type="LIMIT", post_only=True, ts_event=ts)  # fmt: skip


def test_a_resting_limit_waits_behind_the_queue_at_its_price() -> None:
    book = OrderBook(1, [("100.00", "1.0"), ("99.99", "5")], [("100.01", "2"), ("100.02", "4")])
    model = FillModel(latency_ns=0)
    model.book_of = lambda symbol: book
    model.on_trade(_trade("100.00", "0.01", 1, 1))  # the market's last price
    model.on_signal(_limit("q:buy", "buy", "0.5", "100.00", 1))
    model.on_signal(_limit("q:sell", "sell", "0.3", "100.01", 1))
    assert model.on_book("BTCUSDT", 2) == []  # both arrive: 1.0 ahead of the buy, 2 of the sell
    buy, sell = (model.orders[client_order_id_for(i)] for i in ("q:buy", "q:sell"))
    assert (buy.status, sell.status) == ("RESTING", "RESTING")
    # 0.6 traded at the buy's price: all of it the queue ahead's.
    assert model.on_trade(_trade("100.00", "0.6", 3, 2)) == []
    # 0.5 more: 0.4 was still ahead, so 0.1 fills (a maker, at its price).
    (fill,) = model.on_trade(_trade("100.00", "0.5", 4, 3))
    assert (fill.qty, fill.price, fill.liquidity, fill.status) == (
        "0.1", "100", "maker", "PARTIALLY_FILLED"
    )  # fmt: skip
    # The ask level shrinks to 0.5: at most 0.5 can be ahead of the sell now.
    book.asks.set("100.01", "0.5")
    assert model.on_book("BTCUSDT", 5) == []
    (fill,) = model.on_trade(_trade("100.01", "0.6", 6, 4))  # 0.5 ahead, 0.1 for the sell
    assert (fill.client_order_id, fill.qty) == (sell.client_order_id, "0.1")
    # A trade through the buy's price: its level was swept, the rest (0.4) fills.
    (fill,) = model.on_trade(_trade("99.99", "3", 7, 5))
    assert (fill.client_order_id, fill.qty, fill.status) == (buy.client_order_id, "0.4", "FILLED")
    assert buy.filled_qty == Decimal("0.5") and sell.status == "PARTIALLY_FILLED"
    assert model.positions[("threshold", "BTCUSDT")].qty == Decimal("0.4")


def test_a_trade_older_than_the_last_one_meets_no_order() -> None:
    book = OrderBook(1, [("100.00", "1.0")], [("100.01", "2")])
    model = FillModel(latency_ns=0)
    model.book_of = lambda symbol: book
    model.on_trade(_trade("100.00", "0.01", 10, 1))
    model.on_signal(_limit("late:buy", "buy", "0.5", "100.00", 10))
    assert model.on_book("BTCUSDT", 11) == []
    # A REST backfill after a gap: through the order's price, but before it arrived.
    assert model.on_trade(_trade("99.00", "5", 5, 0)) == []
    assert model.counters["late_trades_passed"] == 1
    (fill,) = model.on_trade(_trade("99.99", "1", 12, 2))  # a live one fills it
    assert (fill.qty, fill.status) == ("0.5", "FILLED")


def test_filters_round_and_refuse_as_the_trader_does(tmp_path: Path) -> None:
    base = make_signal()
    signals = [
        replace(base, signal_id="f:tiny", qty="0.000004"),  # LOT_SIZE minimum: refused
        replace(base, signal_id="f:odd", qty="0.0022345678"),  # step 0.00001: rounded down
        replace(base, signal_id="f:small", qty="0.001"),  # 3 USDT: NOTIONAL refused
        replace(
            base, signal_id="f:maker", order_type="LIMIT", post_only=True, price="2000.004"
        ),  # a buy: the tick rounds it down
        replace(
            base, signal_id="f:sell", side="sell", order_type="LIMIT", price="4000.001"
        ),  # a sell: the tick rounds it up
    ]
    cids = {s.signal_id: client_order_id_for(s.signal_id) for s in signals}

    async def live() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        mock = await start_mock(seed=3, ground_truth_path=str(tmp_path / "truth.jsonl"))
        try:
            settings = mock_settings(mock, namespace="bf", instance="backtest-filters",
                                     price_band_bps="10000")  # fmt: skip
            redis = fakeredis.FakeAsyncRedis()
            signals_key, orders = eth_streams(settings)
            await seed_market(redis, settings, "ETHUSDT", base.price)
            for signal in signals:
                await redis.xadd(signals_key, signal.to_fields())
            async with stage_running(run, settings, redis=redis):
                sent = {cids[i] for i in ("f:odd", "f:maker", "f:sell")}
                await _wait_acks(redis, orders, sent)
                await wait_idle(redis, signals_key)
            dead = settings.keys.trader_dead_letters("binance")
            letters = [decode_fields(f) for _, f in await redis.xrange(dead)]
            events = [decode_fields(f) for _, f in await redis.xrange(orders)]
        finally:
            await mock.close()
        intents = {e["client_order_id"]: e for e in events if e["event"] == "intent"}
        return intents, {e["client_order_id"]: e["reason"] for e in letters}

    intents, refusals = asyncio.run(live())
    model = FillModel(latency_ns=0)
    model.on_trade(Trade("binance", "ETHUSDT", "1", base.price, "0.01", "buy", 1, 1))
    for signal in signals:
        model.on_signal(replace(signal, ts_event=1))
    model.on_trade(Trade("binance", "ETHUSDT", "2", base.price, "0.01", "buy", 2, 2))
    refused = {o.client_order_id: o.reason for o in model.orders.values() if o.reason}
    assert set(refused) == set(refusals) == {cids["f:tiny"], cids["f:small"]}, (refused, refusals)
    for cid, reason in refused.items():
        assert reason.startswith("filter ") and reason in refusals[cid], (reason, refusals[cid])
    for name in ("f:odd", "f:maker", "f:sell"):
        order, intent = model.orders[cids[name]], intents[cids[name]]
        assert order.qty == Decimal(intent["qty"]), (name, order, intent)
        assert (order.price, intent["price"] or None) in (
            (None, None), (Decimal(intent["price"] or 0), intent["price"])
        ), (name, order, intent)  # fmt: skip
    assert model.orders[cids["f:odd"]].qty == Decimal("0.00223")
    assert model.orders[cids["f:maker"]].price == Decimal("2000")
    assert model.orders[cids["f:sell"]].price == Decimal("4000.01")


def test_the_example_quotes_post_only_and_cancels_in_a_backtest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    settings = load_settings(
        {"TICKPIPE_STRATEGIES": "tickpipe_momentum:Momentum", "TICKPIPE_SYMBOLS": "BTCUSDT",
         "TICKPIPE_STRATEGY_MOMENTUM_LOOKBACK": "2",
         "TICKPIPE_STRATEGY_MOMENTUM_THRESHOLD_BPS": "0.5",
         "TICKPIPE_STRATEGY_MOMENTUM_CANCEL_AFTER_BARS": "3"}, dotenv_path=None,
    )  # fmt: skip
    records = list(read_recording(BTCUSDT_CAPTURE))[:20_000]
    entries = entries_of_records(settings, records, conn="backtest")
    result = run_backtest(settings, entries, latency_ms=10, out=io.StringIO())
    model = result.model
    orders = list(model.orders.values())
    assert orders and all(o.order_type == "LIMIT" and o.post_only for o in orders)
    # Post-only: it rests or the venue refuses it; it never takes.
    assert model.fills and {f.liquidity for f in model.fills} == {"maker"}
    for order in orders:
        if order.status == "REJECTED":
            assert order.reason == "venue -2010: Order would immediately match and take."
    # Cancels cancel: no order that reached the venue before a cancel of its symbol (that
    # reached it within the recording) is still working; each cancelled one had a cancel after it.
    cancels = [s.ts_event + 10_000_000 for s in result.signals if s.action == "cancel"]
    end = model.now["BTCUSDT"]
    canceled = [o for o in orders if o.status == "CANCELED"]
    assert cancels and canceled
    for order in orders:
        later = [c for c in cancels if order.arrive_ns <= c <= end]
        if order.status in ("RESTING", "PARTIALLY_FILLED"):
            assert not later, (order, later)
        if order.status == "CANCELED":
            assert later, order


def test_filters_from_a_file_shape_the_backtests_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    info = symbol_info("BTCUSDT")
    for rule in info["filters"]:
        if rule["filterType"] == "LOT_SIZE":  # a coarser step than the mock's
            rule.update(stepSize="0.01000000", minQty="0.01000000")
    saved = tmp_path / "exchange-info.json"
    saved.write_bytes(orjson.dumps({"symbols": [info]}))
    env = tmp_path / ".env"
    env.write_text(
        "TICKPIPE_SYMBOLS=BTCUSDT\nTICKPIPE_STRATEGIES=tickpipe_momentum:Momentum\n"
        "TICKPIPE_STRATEGY_MOMENTUM_QTY=0.015\n"
    )
    out = tmp_path / "out"
    argv = ["--env-file", str(env), "backtest", str(BTCUSDT_CAPTURE), "--limit", "20000"]
    assert main([*argv, "--filters", str(saved), "--out", str(out)]) == 0, capsys.readouterr()
    orders = [orjson.loads(line) for line in (out / "orders.jsonl").read_bytes().splitlines()]
    sent = [o for o in orders if o["status"] != "REJECTED"]
    assert sent and {o["qty"] for o in sent} == {"0.01"}, orders  # 0.015 down to the step
