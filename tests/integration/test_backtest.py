"""``tickpipe backtest`` gives the live pipeline's signals, fills them, and refuses bad input.

The equivalence test replays a real capture (``../shared/realdata``) into Redis and lets the
processor stage itself (its shell, leases, batches, commits) make the signals, then runs the
backtest over the same capture: the signals must be the same, field for field, apart from
``cause`` (raw entry ids, which Redis assigns at write time) and the ``ts_signal`` stamp.
The strategies cover every market input: trades (``threshold_cross``, ``rapid_move``),
quotes and bars (the ``examples/momentum`` plug-in, by path) and book, bars and the timer
(the hooks test's ``Recorder``, by path).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import fakeredis
import orjson
import pytest

from tests.realdata import BTCUSDT_CAPTURE
from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.schema import Signal, decode_fields
from tickpipe.common.settings import Settings, load_settings
from tickpipe.processor.shell import run
from tickpipe.tools.backtest import entries_of_records, run_backtest
from tickpipe.tools.cli import main
from tickpipe.tools.ops import read_recording, replay_file

EXAMPLE = Path(__file__).parents[2] / "examples" / "momentum"
FRAMES = 12_000


def make_settings(namespace: str) -> Settings:
    env = {
        "TICKPIPE_NAMESPACE": namespace,
        "TICKPIPE_SYMBOLS": "BTCUSDT",
        "TICKPIPE_STRATEGIES": "threshold_cross,rapid_move,tickpipe_momentum:Momentum,"
        "tests.unit.test_processor_strategy_hooks:Recorder",
        "TICKPIPE_HYSTERESIS_BPS": "1",
        "TICKPIPE_RAPID_MOVE_PCT": "0.03",
        "TICKPIPE_STRATEGY_MOMENTUM_THRESHOLD_BPS": "1",
        "TICKPIPE_BATCH_SIZE": "97",
    }
    return load_settings(env, dotenv_path=None)


def comparable(signals: list[Signal]) -> list[Signal]:
    return [dataclasses.replace(s, cause="", ts_signal=0) for s in signals]


async def live_signals(settings: Settings, records: list[Any]) -> list[Signal]:
    """Replay ``records`` into Redis and run the processor stage until it has read them all."""
    redis = fakeredis.FakeAsyncRedis()
    await replay_file(redis, settings, iter(records), conn="live", out=io.StringIO())
    (partition,) = settings.partitions()
    raw = settings.keys.raw(partition)
    last = (await redis.xrevrange(raw, count=1))[0][0]
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, redis=redis, clock=lambda: 42))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 240
    while True:
        groups = await redis.xinfo_groups(raw)
        group = next((g for g in groups if g["name"] == GROUP_PROCESSOR.encode()), None)
        if group and group["pending"] == 0 and group["last-delivered-id"] == last:
            break
        assert loop.time() < deadline, f"the processor did not finish: {groups}"
        assert not task.done(), task
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 30)
    entries = await redis.xrange(settings.keys.signals(partition))
    return [Signal.from_fields(decode_fields(f)) for _, f in entries]


def test_the_backtest_signals_are_the_live_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    records = list(read_recording(BTCUSDT_CAPTURE))[:FRAMES]
    settings = make_settings("bt")
    live = asyncio.run(live_signals(settings, records))
    entries = entries_of_records(settings, records, conn="backtest")
    result = run_backtest(settings, entries, latency_ms=10, out=io.StringIO())
    strategies = {s.strategy for s in live}
    assert strategies == {"threshold_cross", "rapid_move", "momentum", "recorder"}, strategies
    assert len(live) > 50
    assert comparable(result.signals) == comparable(live)
    # Every placed order met the market once: filled, refused, expired, resting or canceled.
    placed = [s for s in live if s.action == "place"]
    assert len(result.model.orders) == len({s.signal_id for s in placed})
    filled = {f.client_order_id for f in result.model.fills}
    done = ("FILLED", "PARTIALLY_FILLED", "CANCELED", "EXPIRED")
    assert all(result.model.orders[c].status in done for c in filled)
    for cid, order in result.model.orders.items():  # an order's fills add up to its progress
        assert sum(Decimal(f.qty) for f in result.model.fills if f.client_order_id == cid) == (
            order.filled_qty
        )
        assert order.filled_qty <= order.qty
    qty = {k: p.qty for k, p in result.model.positions.items()}
    for (strategy, symbol), position_qty in qty.items():
        signed = sum(
            (1 if f.side == "buy" else -1) * float(f.qty)
            for f in result.model.fills
            if (f.strategy, f.symbol) == (strategy, symbol)
        )
        assert float(position_qty) == pytest.approx(signed)  # positions = the fills


def test_the_command_prints_a_summary_and_writes_signals_and_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    env = tmp_path / ".env"
    env.write_text(
        "TICKPIPE_STRATEGIES=threshold_cross,tickpipe_momentum:Momentum\n"
        "TICKPIPE_HYSTERESIS_BPS=1\nTICKPIPE_SYMBOLS=BTCUSDT\n"
    )
    out = tmp_path / "out"
    args = ["--env-file", str(env), "backtest", str(BTCUSDT_CAPTURE), "--out", str(out)]
    report = tmp_path / "report.html"
    assert main([*args, "--limit", "20000", "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    page = report.read_text()
    assert '"name":"equity"' in page and '"name":"BTCUSDT buy"' in page
    assert "signals: " in printed and "PnL: realised" in printed and "fills: " in printed
    signals = [orjson.loads(line) for line in (out / "signals.jsonl").read_bytes().splitlines()]
    fills = [orjson.loads(line) for line in (out / "fills.jsonl").read_bytes().splitlines()]
    assert signals and fills
    assert {f["signal_id"] for f in fills} <= {s["signal_id"] for s in signals}
    assert f"signals: {len(signals)} " in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give recording FILEs"),
        (["/no/such/file"], "/no/such/file: no such file or directory"),
        (["RECORDING", "--latency-ms", "-1"], "--latency-ms must be 0 or more"),
        (["RECORDING", "--fee-bps", "x"], "--fee-bps must be a number"),
        (["RECORDING", "--start", "1"], "--start and --end select a Redis range"),
        (["--redis", "--start", "yesterday"], "'yesterday' is not an entry id"),
        (["NOT_A_RECORDING"], "not a recording"),
        (["RECORDING", "--filters", "NOT_A_RECORDING"], "not an exchangeInfo answer"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    names = {"RECORDING": str(BTCUSDT_CAPTURE), "NOT_A_RECORDING": str(junk)}
    argv = ["--env-file", "/dev/null", "backtest", *[names.get(a, a) for a in extra]]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tickpipe backtest: ") and message in err[0], err


def test_simulated_fills_reach_the_strategy_through_its_orders_hooks() -> None:
    settings = load_settings(
        {"TICKPIPE_STRATEGIES": "tests.unit.test_processor_own_orders:Follower"},
        dotenv_path=None,
    )
    records = list(read_recording(BTCUSDT_CAPTURE))[:FRAMES]
    entries = entries_of_records(settings, records, conn="backtest")
    result = run_backtest(settings, entries, latency_ms=0, out=io.StringIO())
    entry, *exits = result.signals
    assert entry.side == "buy" and entry.order_type == "LIMIT"
    fills = result.model.fills
    bought = [f for f in fills if f.signal_id == entry.signal_id]
    # The entry (2 at the bid) rested and filled in parts, as trades printed beyond the queue
    # ahead of it: each part reached the strategy, which sold exactly that part.
    assert sum(Decimal(f.qty) for f in bought) == 2 and bought[-1].status == "FILLED"
    assert {f.liquidity for f in bought} == {"maker"} and len(bought) > 1
    assert [(s.side, s.qty, s.reason[:5]) for s in exits] == [
        ("sell", f.qty, "exit ") for f in bought
    ]
    assert all("|o" in s.signal_id for s in exits)
    for exit_ in exits:  # each exit (MARKET) walked the recorded bids, price by price
        sold = [f for f in fills if f.signal_id == exit_.signal_id]
        assert sum(Decimal(f.qty) for f in sold) == Decimal(exit_.qty), sold
        prices = [Decimal(f.price) for f in sold]
        assert prices == sorted(prices, reverse=True) and len(set(prices)) == len(prices)
        assert {f.liquidity for f in sold} == {"taker"}
    assert max(len([f for f in fills if f.signal_id == x.signal_id]) for x in exits) > 1
    assert result.counters["fills_without_book"] == 0
    assert result.model.positions[("follower", "BTCUSDT")].qty == 0  # in and out again
    assert result.partitions == ["binance:0"]
    assert result.counters["own_fills"] == len(fills)  # every fill went back to the strategy


def test_a_redis_range_gives_the_signals_of_the_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = list(read_recording(BTCUSDT_CAPTURE))[:FRAMES]
    settings = load_settings(
        {"TICKPIPE_SYMBOLS": "BTCUSDT", "TICKPIPE_HYSTERESIS_BPS": "1"}, dotenv_path=None
    )
    redis = fakeredis.FakeAsyncRedis()
    asyncio.run(replay_file(redis, settings, iter(records), conn="r", out=io.StringIO()))
    monkeypatch.setattr("tickpipe.tools.cli_backtest.connect_redis", lambda url: redis)
    env = tmp_path / ".env"
    env.write_text("TICKPIPE_SYMBOLS=BTCUSDT\nTICKPIPE_HYSTERESIS_BPS=1\n")
    out = tmp_path / "out"
    argv = ["--env-file", str(env), "backtest", "--redis", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    from_redis = [
        Signal.from_fields(orjson.loads(line))
        for line in (out / "signals.jsonl").read_bytes().splitlines()
    ]
    direct = run_backtest(
        settings, entries_of_records(settings, records, conn="b"), out=io.StringIO()
    ).signals
    assert len(direct) > 3 and comparable(from_redis) == comparable(direct)
    # A range with nothing in it is a mistake in the input: one line, exit 2.
    assert main([*argv, "--start", "1", "--end", "2"]) == 2
    assert "no raw entries in 0..0" in capsys.readouterr().err


def test_a_report_without_plotly_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tickpipe.common.extras._installed", lambda name: False)
    argv = ["--env-file", "/dev/null", "backtest", str(BTCUSDT_CAPTURE)]
    argv += ["--out", str(tmp_path / "o")]
    assert main([*argv, "--report", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'tickpipe[dashboard]'" in err[0], err
    assert not (tmp_path / "o").exists()  # refused before reading anything
