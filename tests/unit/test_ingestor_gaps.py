"""Unit tests of trade-id gap detection, REST weight budgeting and event normalisation."""

from __future__ import annotations

import json
import random

import orjson

from tests.realdata import REALDATA, first_frames
from tickpipe.common.schema import OrderUpdate, Quote, Trade
from tickpipe.ingestor.gaps import (
    DepthIds,
    TradeIds,
    WeightBudget,
    depth_ids_of,
    depth_weight,
    trade_id_of,
    trade_of,
)
from tickpipe.venues.binance.events import normalise

S = 1_000_000_000


def test_real_trade_frames_have_contiguous_ids_and_no_gap_is_reported() -> None:
    frames = first_frames(2000, "@trade")
    ids = TradeIds()
    holes = []
    for frame in frames:
        trade = trade_of(frame)
        assert trade is not None and trade[0] == "BTCUSDT"
        holes.append(ids.seen(*trade))
    assert not any(holes)
    assert trade_of('{"stream":"x@depth","data":{"e":"depthUpdate"}}') is None
    assert trade_of("not json") is None


def test_the_trade_id_read_without_decoding_equals_the_decoded_one() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed={seed}")
    rng = random.Random(seed)
    frames = first_frames(500, "@trade")
    for frame in frames:
        obj = orjson.loads(frame)
        data = obj["data"]
        truth = (data["s"], "trades", data["t"])
        assert trade_id_of(frame) == trade_id_of(frame.encode()) == truth
        # other spellings of the same frame go through the decoder, with the same answer
        data["t"] = rng.randrange(1 << 62)
        truth = (data["s"], "trades", data["t"])
        spaced = json.dumps(obj, separators=(", ", ": "))
        reordered = orjson.dumps({"data": {"t": data["t"], **data}, "stream": obj["stream"]})
        tight = orjson.dumps(obj)
        assert trade_id_of(spaced) == trade_id_of(reordered) == trade_id_of(tight) == truth
    assert (
        trade_id_of('{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":x}}')
        is None
    )


def test_a_skipped_range_is_reported_once_and_old_ids_are_ignored() -> None:
    ids = TradeIds()
    assert ids.seen("BTCUSDT", 10) is None  # nothing known before
    assert ids.seen("BTCUSDT", 11) is None
    assert ids.seen("BTCUSDT", 15) == (12, 14)
    assert ids.seen("BTCUSDT", 13) is None  # an overlap or a duplicate
    assert ids.seen("BTCUSDT", 16) is None
    assert ids.seen("ETHUSDT", 3) is None  # per symbol


def test_weight_budget_spends_and_refills_per_minute() -> None:
    budget = WeightBudget(per_minute=100, tokens=100)
    assert budget.wait_ns(depth_weight(1000), 0) == 0  # 50
    assert budget.wait_ns(50, 0) == 0
    wait = budget.wait_ns(50, 0)
    assert 29 * S < wait <= 30 * S + 1  # 50 of 100 per minute
    assert budget.wait_ns(50, wait) == 0
    budget.block(wait, 5.0)
    assert budget.wait_ns(1, wait) == 5 * S
    assert [depth_weight(n) for n in (100, 500, 1000, 5000)] == [5, 25, 50, 250]


def test_normalise_turns_real_frames_into_events() -> None:
    trade = normalise(first_frames(1, "@trade")[0], ts_recv=7)
    assert isinstance(trade, Trade) and trade.trade_id == "3735683259" and trade.side == "sell"
    book = (
        '{"stream":"ftmusdt@bookTicker","data":{"u":800360982,"s":"FTMUSDT",'
        '"b":"0.33989000","B":"1565.60000000","a":"0.34012000","A":"703.00000000"}}'
    )
    quote = normalise(book, ts_recv=9)
    assert isinstance(quote, Quote) and quote.bid_price == "0.33989000" and quote.ts_event == 9
    report = json.loads((REALDATA / "nautilus_trader" / "ws_spot_execution_report_binance_us.json")
                        .read_text())  # fmt: skip
    frame = json.dumps({"subscriptionId": 0, "event": report["data"]})
    update = normalise(frame, ts_recv=1)
    assert isinstance(update, OrderUpdate) and update.status == "FILLED"
    assert normalise('{"result":null,"id":1}', ts_recv=1) is None


def test_depth_diffs_must_follow_on_from_the_last_update_id() -> None:
    frames = [
        line.partition(": ")[2]
        for line in (REALDATA / "cryptofeed" / "20210814_4fe0297" / "BINANCE.ws.1.0")
        .read_text()
        .splitlines()
        if '"e":"depthUpdate"' in line
    ]
    ids = DepthIds()
    parsed = [depth_ids_of(f) for f in frames]
    assert parsed and all(p is not None for p in parsed)
    assert not any(ids.seen(*p) for p in parsed if p is not None)  # a real session: no gap
    fresh = DepthIds()
    assert fresh.seen("BTCUSDT", 100, 105) is None
    assert fresh.seen("BTCUSDT", 106, 110) is None
    assert fresh.seen("BTCUSDT", 115, 120) == (111, 114)
    assert fresh.seen("BTCUSDT", 101, 119) is None  # an older diff
    assert depth_ids_of('{"stream":"a@trade","data":{"e":"trade"}}') is None
