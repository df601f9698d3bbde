"""``tickpipe replay`` of the real captures into a real redis-server and a real processor.

The ``tickpipe replay`` command (a child process) writes the four hftbacktest captures (BTCUSDT
and ETHUSDT, 10.8 minutes each, one REST snapshot per symbol); the processor (a child process)
turns them into trades, bars and book tops. What it wrote, read back with the DataFrame readers,
must equal an independent reading of the captures: every trade, every 1-minute bar, and the book
top at every ``bookTicker`` whose update id a depth diff ends on.
"""

from __future__ import annotations

import bisect
import sys
from decimal import Decimal

import pytest

from common import frames
from common.names import GROUP_PROCESSOR, Keys, Partition
from common.recordings import read_recording
from common.schema import decode_fields
from common.settings import Settings
from tests.e2e.conftest import Processes, RedisServer, group_idle, wait_for
from tests.integration.test_replay_realdata import HFT, Truth

pytestmark = pytest.mark.e2e

NS = "rpl"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
P = Partition("binance", 0)


def test_replayed_captures_through_the_processor_equal_the_captures(
    redis_server: RedisServer, processes: Processes
) -> None:
    truth = Truth()
    for path in HFT:
        for rec in read_recording(path):
            truth.add(rec.data)
    processes.env.update(
        REDIS_URL=redis_server.url, TICKPIPE_NAMESPACE=NS, TICKPIPE_SYMBOLS=",".join(SYMBOLS)
    )
    processor = processes.start("processor", "-m", "processor")
    replay = processes.start("replay", "-m", "common.cli", "replay", *map(str, HFT))
    assert replay.proc.wait(300) == 0, replay.tail()
    assert "replayed 179,318 frames (2 rest, 179,316 ws)" in replay.log.read_text()
    client = redis_server.client()
    raw = Keys(NS).raw(P)
    wait_for(lambda: group_idle(client, raw, GROUP_PROCESSOR), timeout_s=300,
             what="the processor to handle every replayed frame")  # fmt: skip
    assert processor.stop() == 0, processor.tail()

    settings = Settings(redis_url=redis_server.url, namespace=NS, symbols=SYMBOLS)
    for symbol in SYMBOLS:
        trades = frames.trades(settings, symbol)
        assert trades["trade_id"].is_unique
        got = dict(zip(trades["trade_id"], zip(trades["price"], trades["qty"], strict=True),
                       strict=True))  # fmt: skip
        assert got.keys() == truth.trades[symbol].keys()
        assert all(got[t] == (float(p), float(q)) for t, (p, q) in truth.trades[symbol].items())

        bars = frames.bars(settings, symbol, interval="1m")
        expected_bars = truth.bars(symbol)
        assert [b.value for b in bars.index] == sorted(expected_bars)
        for ts, row in bars.iterrows():
            o, h, lo, c, v, n = expected_bars[ts.value]
            assert (row["open"], row["high"], row["low"], row["close"]) == tuple(
                float(x) for x in (o, h, lo, c)
            )
            assert Decimal(str(row["volume"])) == pytest.approx(v) and row["trades"] == n

        # the book stream in the order it was written (its exchange-time order puts the
        # snapshot's top, stamped with the recorder's clock, among the diffs before it)
        tops = [decode_fields(f) for _, f in client.xrange(Keys(NS).book(P))]
        tops = [t for t in tops if t["symbol"] == symbol]
        first_live = [t["status"] for t in tops].index("live")
        assert all(t["status"] == "live" for t in tops[first_live:]), f"{symbol}: book lost"
        live = tops[first_live:]
        ids = [int(t["update_id"]) for t in live]
        assert ids == sorted(ids)
        expected = {u: q for u, q in truth.tickers[symbol].items()
                    if u in truth.diff_ends[symbol] and u >= ids[0]}  # fmt: skip
        assert len(expected) > 1000
        for u, quote in expected.items():
            top = live[bisect.bisect_right(ids, u) - 1]
            got_top = (top["bid_price"], top["bid_qty"], top["ask_price"], top["ask_qty"])
            assert got_top == quote, f"{symbol} at {u}"
        print(
            f"{symbol}: {len(got)} trades, {len(bars)} bars, {len(expected)} tops", file=sys.stderr
        )
