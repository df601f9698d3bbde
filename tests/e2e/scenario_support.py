"""What the pipeline scenario tests share: a run against the mock, and references from its truth.

* :func:`draw_seed` draws the run's seed (``TICKPIPE_SCENARIO_SEED`` replays one) and prints it;
* :func:`start_scenario` starts the mock (ground truth on, seeded from the run's random source,
  the given flags) and the three stages;
* :func:`inject` POSTs faults or market scenarios to the running mock once the pipeline flows, so
  their timing is relative to a live pipeline, however slowly the processes started;
* :func:`finish` stops the input, lets the processor and trader drain, stops them, and returns the
  mock's ground truth;
* :func:`assert_trades_exactly_once`, :func:`assert_bars_equal_reference` compare the pipeline's
  outputs with the trades the mock sent (:func:`assert_bars_equal` with any trade records);
  :func:`reference_bars` computes 1-minute bars from those trades with pandas, independently of
  the processor's bar builder;
* :func:`threshold_reference` computes the threshold strategy's decisions from ground-truth
  prices, independently of :class:`processor.strategies.ThresholdCross`.
"""

from __future__ import annotations

import json
import os
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import redis

from tests.e2e.conftest import Processes, RedisServer, Stage, drain_and_stop, post_to_mock
from tests.e2e.pipeline_support import entries, trades_once
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import Bar, Trade
from tickpipe.mock_ws.ground_truth import GroundTruth, read_ground_truth

__all__ = [
    "KEYS",
    "PARTITION",
    "assert_bars_equal",
    "assert_bars_equal_reference",
    "assert_trades_exactly_once",
    "draw_seed",
    "finish",
    "health",
    "inject",
    "markers",
    "reference_bars",
    "start_scenario",
    "threshold_reference",
]

NAMESPACE = "scn"
KEYS = Keys(NAMESPACE)
PARTITION = Partition("binance", 0)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def draw_seed(name: str) -> random.Random:
    """Return the run's random source; its seed is printed (``TICKPIPE_SCENARIO_SEED`` replays)."""
    seed = int(os.environ.get("TICKPIPE_SCENARIO_SEED") or random.randrange(2**31))
    print(f"{name}: seed {seed} (replay with TICKPIPE_SCENARIO_SEED={seed})")
    return random.Random(seed)


def start_scenario(
    processes: Processes,
    redis_server: RedisServer,
    tmp_path: Path,
    rng: random.Random,
    *mock_args: str,
    env: dict[str, str] | None = None,
) -> tuple[tuple[Stage, Stage, Stage], redis.Redis]:
    """Start the mock (a ground-truth log, its market seeded from the run's ``rng``, the flags
    ``mock_args``) and the three stages with ``env`` added; return them and a Redis client."""
    processes.env.update(
        BINANCE_API_KEY="scenario-key",
        BINANCE_API_SECRET="scenario-secret",
        TICKPIPE_HEALTH_INTERVAL_S="0.2",
        **(env or {}),
    )
    truth = tmp_path / "ground-truth.jsonl"
    seed = str(rng.randrange(10**6))
    stages = processes.start_binance_pipeline(
        redis_server.url, NAMESPACE, SYMBOLS, "--ground-truth", str(truth), "--seed", seed,
        *mock_args,
    )  # fmt: skip
    return stages, redis_server.client()


def inject(tmp_path: Path, what: str, body: object) -> None:
    """POST ``body`` to the running mock's ``/_mock/faults`` or ``/_mock/scenario`` (``what``)."""
    port = json.loads((tmp_path / "mock.ready.json").read_text())["binance_port"]
    post_to_mock(port, what, body)


def finish(client: redis.Redis, stages: tuple[Stage, Stage, Stage], tmp_path: Path) -> GroundTruth:
    """Stop the input, drain the processor and trader, stop them; return the ground truth."""
    drain_and_stop(client, KEYS, PARTITION, stages)
    return read_ground_truth(tmp_path / "ground-truth.jsonl")


def health(client: redis.Redis, service: str, instance: str) -> dict[str, Any]:
    """Return a stage's current health record (empty when it has none)."""
    raw = client.get(KEYS.health(service, instance))
    return dict(orjson.loads(raw)) if raw else {}


def markers(client: redis.Redis, event: str) -> list[dict[str, Any]]:
    """Return the ingestor's markers of one ``event`` in the raw stream."""
    out = []
    for _, fields in entries(client, KEYS.raw(PARTITION)):
        if fields.get("kind") == "marker":
            data = orjson.loads(fields["data"])
            if data.get("event") == event:
                out.append(data)
    return out


def assert_trades_exactly_once(client: redis.Redis, truth: GroundTruth) -> list[Trade]:
    """Every trade the mock sent is in the trades stream once, as sent; return them."""
    trades = trades_once(client, KEYS, PARTITION)
    seen = {(t.symbol, int(t.trade_id)) for t in trades}
    sent = {(t["symbol"], int(t["trade_id"])): t for t in truth.trades_sent()}
    assert set(sent) <= seen, f"missing: {sorted(set(sent) - seen)[:10]}"
    for t in trades:
        expected = sent.get((t.symbol, int(t.trade_id)))
        if expected is not None:
            assert (t.price, t.qty, t.ts_event) == (
                expected["price"],
                expected["qty"],
                expected["T"] * 1_000_000,
            )
    # A trade the mock did not send over the socket came from REST history (a backfill): the
    # ids of each symbol are contiguous, so nothing is missing between the first and the last.
    for symbol in {t.symbol for t in trades}:
        ids = sorted(int(t.trade_id) for t in trades if t.symbol == symbol)
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: a hole in the trade ids"
    return trades


def reference_bars(trades: list[dict[str, Any]]) -> pd.DataFrame:
    """Compute 1-minute OHLCV bars from trade records (``symbol trade_id price qty T``)."""
    df = pd.DataFrame(trades)
    df["trade_id"] = df["trade_id"].astype(int)
    df = df.sort_values(["symbol", "trade_id"])
    df["minute"] = (df["T"].astype("int64") // 60_000) * 60_000 * 1_000_000
    df["price_d"] = df["price"].map(Decimal)
    df["qty_d"] = df["qty"].map(Decimal)
    grouped = df.groupby(["symbol", "minute"], sort=True)
    return pd.DataFrame(
        {
            "open": grouped["price"].first(),
            "high": grouped["price_d"].max().map(str),
            "low": grouped["price_d"].min().map(str),
            "close": grouped["price"].last(),
            "volume": grouped["qty_d"].sum(),
            "trades": grouped["trade_id"].count(),
        }
    )


def assert_bars_equal_reference(client: redis.Redis, trades: list[Trade]) -> int:
    """The latest revision of every 1-minute bar equals :func:`reference_bars`; return how many.

    ``trades`` are the pipeline's trades once each (checked against the ground truth first), so
    trades fetched from REST history count too.
    """
    records = [
        {"symbol": t.symbol, "trade_id": t.trade_id, "price": t.price, "qty": t.qty,
         "T": t.ts_event // 1_000_000}
        for t in trades
    ]  # fmt: skip
    return assert_bars_equal(client, KEYS, PARTITION, records)


def assert_bars_equal(
    client: redis.Redis, keys: Keys, partition: Partition, trades: list[dict[str, Any]]
) -> int:
    """The latest revision of every 1-minute bar of ``partition`` equals :func:`reference_bars`
    of the trade records ``trades`` (``symbol trade_id price qty T``); return how many."""
    latest: dict[tuple[str, int], Bar] = {}
    for _, fields in entries(client, keys.bars(partition, "1m")):
        bar = Bar.from_fields(fields)
        latest[(bar.symbol, bar.ts_open)] = bar
    expected = reference_bars(trades)
    assert set(latest) == set(expected.index)
    for (symbol, ts_open), row in expected.iterrows():
        bar = latest[(symbol, ts_open)]
        got = (bar.open, bar.high, bar.low, bar.close, Decimal(bar.volume), bar.trades)
        want = (row["open"], row["high"], row["low"], row["close"], row["volume"], row["trades"])
        assert got == want, (symbol, ts_open)
    return len(latest)


def threshold_reference(
    trades: list[dict[str, Any]], levels: dict[str, str], hysteresis_bps: str
) -> list[tuple[str, str, str]]:
    """Return ``(symbol, side, price)`` of each threshold crossing, in trade-id order per symbol.

    The state per symbol starts unknown, becomes ``above`` at ``price >= level (1 + h)`` and
    ``below`` at ``price <= level (1 - h)``; below -> above is a buy, above -> below a sell.
    """
    h = Decimal(hysteresis_bps) / Decimal(10_000)
    out = []
    state: dict[str, str] = {}
    for t in sorted(trades, key=lambda t: (t["symbol"], int(t["trade_id"]))):
        symbol, price = t["symbol"], Decimal(t["price"])
        level = Decimal(levels[symbol])
        if price >= level * (1 + h):
            new = "above"
        elif price <= level * (1 - h):
            new = "below"
        else:
            continue
        old = state.get(symbol, "")
        state[symbol] = new
        if (old, new) == ("below", "above"):
            out.append((symbol, "buy", t["price"]))
        elif (old, new) == ("above", "below"):
            out.append((symbol, "sell", t["price"]))
    return out
