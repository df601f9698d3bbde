"""``tickpipe replay`` of the real captures is a faithful source: books synchronise as live.

Each capture in ``../shared/realdata`` is replayed into fakeredis with :func:`replay_file`,
the raw entries are run through the processor's pure core (:func:`process_batch`), and the
outputs are compared with an independent reading of the capture itself:

* every trade, once, with the venue's id, price and quantity;
* every 1-minute bar (open, high, low, close, volume, count) folded from the captured trades;
* every book top at a ``bookTicker`` whose update id a depth diff ends on equals that ticker's
  best bid and ask (Binance's own top of book at the same update id), with the book live.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import io
from collections import defaultdict
from decimal import Decimal
from typing import Any

import fakeredis
import orjson
import pytest

from tests.realdata import REALDATA
from tickpipe.common.names import Partition
from tickpipe.common.settings import Settings
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.lanes import decode_entries
from tickpipe.tools.ops import read_recording, read_recordings, replay_file

SPOT = REALDATA / "hftbacktest" / "spot"
HFT = [SPOT / f"{s}_{d}.gz" for s in ("btcusdt", "ethusdt") for d in ("20240808", "20240809")]


class Truth:
    """What the capture itself says: trades, 1-minute bars and tops at diff-end ids."""

    def __init__(self) -> None:
        self.trades: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        self.diff_ends: dict[str, set[int]] = defaultdict(set)
        self.tickers: dict[str, dict[int, tuple[str, str, str, str]]] = defaultdict(dict)
        self.trade_times: dict[str, dict[str, int]] = defaultdict(dict)

    def add(self, frame: str) -> None:
        obj = orjson.loads(frame)
        if "stream" not in obj:
            return  # a REST snapshot: the processor's input, not ground truth
        data, channel = obj["data"], obj["stream"].split("@", 1)[1]
        symbol = data["s"]
        if channel == "trade":
            self.trades[symbol][str(data["t"])] = (data["p"], data["q"])
            self.trade_times[symbol][str(data["t"])] = int(data["T"])
        elif channel == "aggTrade":
            self.trades[symbol][str(data["a"])] = (data["p"], data["q"])
            self.trade_times[symbol][str(data["a"])] = int(data["T"])
        elif channel.startswith("depth"):
            self.diff_ends[symbol].add(int(data["u"]))
        elif channel == "bookTicker":
            self.tickers[symbol][int(data["u"])] = (data["b"], data["B"], data["a"], data["A"])

    def bars(self, symbol: str) -> dict[int, tuple[str, ...]]:
        """1-minute bars from the captured trades, in trade-id order."""
        out: dict[int, list[Any]] = {}
        for tid in sorted(self.trades[symbol], key=int):
            price, qty = (Decimal(x) for x in self.trades[symbol][tid])
            minute = self.trade_times[symbol][tid] // 60_000 * 60_000 * 1_000_000
            bar = out.get(minute)
            if bar is None:
                out[minute] = [price, price, price, price, qty, 1]
            else:
                bar[1], bar[2] = max(bar[1], price), min(bar[2], price)
                bar[3], bar[4], bar[5] = price, bar[4] + qty, bar[5] + 1
        return {m: (*(Decimal(str(x)).normalize() for x in b[:5]), b[5]) for m, b in out.items()}


def _replay_and_process(settings: Settings, records: Any) -> dict[str, Any]:
    async def go() -> dict[Partition, list[Any]]:
        redis = fakeredis.FakeAsyncRedis()
        await replay_file(redis, settings, records, conn="rep", out=io.StringIO())
        stored = {}
        for part in settings.partitions():
            stored[part] = decode_entries(await redis.xrange(settings.keys.raw(part)))
        return stored

    outputs: dict[str, Any] = {"trades": [], "bars": {}, "tops": [], "dead": [], "counters": {}}
    for part, entries in asyncio.run(go()).items():
        state = PartitionState.from_settings(settings, str(part), part.venue)
        for n in range(0, len(entries), 5000):
            out = process_batch(state, entries[n : n + 5000], 1)
            outputs["trades"] += out.trades
            outputs["tops"] += out.book_tops
            outputs["dead"] += out.dead_letters
            for bar in out.bars:
                if bar.interval == "1m":
                    outputs["bars"][(bar.symbol, bar.ts_open)] = bar
        outputs["counters"][str(part)] = dict(state.counters)
    return outputs


def _check(truth: Truth, outputs: dict[str, Any], symbols: tuple[str, ...]) -> None:
    assert [d.reason for d in outputs["dead"]] == []
    for symbol in symbols:
        got = [t for t in outputs["trades"] if t.symbol == symbol]
        assert len(got) == len({t.trade_id for t in got}), f"{symbol}: a trade twice"
        assert {t.trade_id: (t.price, t.qty) for t in got} == truth.trades[symbol]
        if truth.trades[symbol]:
            bars = {
                ts: (*(Decimal(x).normalize() for x in (b.open, b.high, b.low, b.close, b.volume)),
                     b.trades)
                for (s, ts), b in outputs["bars"].items() if s == symbol
            }  # fmt: skip
            assert bars == truth.bars(symbol), f"{symbol}: 1-minute bars differ"
        # A top is written when the ten best levels change: the book at id u is the last top
        # written at an id <= u, and once live it must never go stale again.
        mine = [t for t in outputs["tops"] if t.symbol == symbol]
        first_live = next((n for n, t in enumerate(mine) if t.status == "live"), len(mine))
        assert first_live < len(mine), f"{symbol}: the book never went live"
        assert all(t.status == "live" for t in mine[first_live:]), f"{symbol}: book lost"
        live = mine[first_live:]
        ids = [int(t.update_id) for t in live]
        assert ids == sorted(ids)
        expected = {u: q for u, q in truth.tickers[symbol].items() if u in truth.diff_ends[symbol]}
        expected = {u: q for u, q in expected.items() if u >= ids[0]}
        assert len(expected) > 10, f"{symbol}: too few bookTickers on a diff's last id"
        for u, (bid, bid_qty, ask, ask_qty) in expected.items():
            top = live[bisect.bisect_right(ids, u) - 1]
            assert (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) == (
                bid,
                bid_qty,
                ask,
                ask_qty,
            ), f"{symbol}: top at update id {u} (book top written at {top.update_id})"
        print(f"{symbol}: {len(got)} trades, {len(expected)} tops checked from id {ids[0]}")


def test_hftbacktest_captures_rebuild_trades_bars_and_every_book_top() -> None:
    settings = Settings(namespace="rr", symbols=("BTCUSDT", "ETHUSDT"), shards=2, instance="t")
    truth = Truth()
    for path in HFT:
        for rec in read_recording(path):
            truth.add(rec[1])
    records = heapq.merge(*(read_recording(p) for p in HFT), key=lambda r: r[0])
    outputs = _replay_and_process(settings, records)
    _check(truth, outputs, ("BTCUSDT", "ETHUSDT"))


@pytest.mark.parametrize("capture", ["20210814_4fe0297", "20210417_3525dc8"])
def test_cryptofeed_captures_rebuild_trades_and_every_book_top(capture: str) -> None:
    directory = REALDATA / "cryptofeed" / capture
    truth = Truth()
    for line in (directory / "BINANCE.ws.1.0").read_text().splitlines()[1:]:
        if line.strip():
            truth.add(line.split(": ", 1)[1])
    symbols = tuple(sorted(truth.diff_ends))
    settings = Settings(namespace="rc", symbols=symbols, shards=2, instance="t")
    outputs = _replay_and_process(settings, read_recordings([directory]))
    # every symbol whose capture holds enough bookTickers on a diff's last id to compare
    checked = tuple(s for s in symbols if len(truth.tickers[s].keys() & truth.diff_ends[s]) > 10)
    assert len(checked) >= 3
    _check(truth, outputs, checked)
    assert sum(c["snapshots"] for c in outputs["counters"].values()) == len(symbols)
    assert sum(c["book_gaps"] for c in outputs["counters"].values()) == 0


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q", "-s"])
