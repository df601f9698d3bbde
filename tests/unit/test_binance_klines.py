"""Binance klines become the venue's own bars: every push of every candle, from real captures."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import PartitionState, process_batch

CAPTURES = Path(__file__).parents[3] / "shared" / "realdata" / "cryptofeed"
FILES = sorted(CAPTURES.glob("*/BINANCE.ws.1.0"))


def _frames(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text().splitlines():
        stamp, sep, frame = line.partition(": ")
        if sep and frame.startswith("{"):
            out.append((int(float(stamp) * 1e9), frame))
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.parent.name for p in FILES])
def test_every_kline_push_is_a_venue_bar_revision(path: Path) -> None:
    frames = _frames(path)
    entries = [
        (f"{1_700_000_000_000 + n}-0", RawFrame("ws", "binance", "c1", n + 1, ts, frame))
        for n, (ts, frame) in enumerate(frames)
    ]
    # What the capture itself says: each kline push, numbered per candle in arrival order.
    expected = []
    pushes: dict[tuple[str, str, int], int] = defaultdict(int)
    for _, frame in frames:
        obj = orjson.loads(frame)
        if "@kline_" not in obj["stream"]:
            continue
        k = obj["data"]["k"]
        key = (k["s"], k["i"], k["t"])
        expected.append((k["s"], k["i"], k["t"] * 1_000_000, k["o"], k["h"], k["l"], k["c"],
                         k["v"], k["n"], str(k["f"]), str(k["L"]), k["x"], pushes[key],
                         obj["data"]["E"] * 1_000_000))  # fmt: skip
        pushes[key] += 1
    assert len(expected) >= 10, "the capture holds klines"
    state = PartitionState("binance:0", "binance")
    bars = []
    for n in range(0, len(entries), 500):  # batches, as the shell reads them
        out = process_batch(state, entries[n : n + 500], 1)
        assert not [d for d in out.dead_letters if "kline" in d.data]
        bars += out.venue_bars
    got = [(b.symbol, b.interval, b.ts_open, b.open, b.high, b.low, b.close, b.volume,
            b.trades, b.first_trade_id, b.last_trade_id, b.final, b.revision, b.ts_event)
           for b in bars]  # fmt: skip
    assert got == expected
    assert state.counters["venue_bars"] == len(expected)
    assert not any(name.startswith("ignored:kline") for name in state.counters)


@pytest.mark.parametrize(
    "payload,reason",
    [
        ({"e": "kline", "E": 1, "s": "BTCUSDT"}, "without its candle"),
        ({"e": "kline", "E": 1, "s": "BTCUSDT", "k": {"s": "BTCUSDT", "i": "7m"}}, "interval"),
    ],
)  # fmt: skip
def test_a_malformed_kline_is_a_dead_letter(payload: dict, reason: str) -> None:
    frame = orjson.dumps({"stream": "btcusdt@kline_1m", "data": payload}).decode()
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, [("1-0", RawFrame("ws", "binance", "c1", 1, 1, frame))], 1)
    (letter,) = out.dead_letters
    assert reason in letter.reason
