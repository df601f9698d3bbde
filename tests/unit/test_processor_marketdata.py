"""Market-data frames that are malformed become dead letters with a reason; parsing details."""

from __future__ import annotations

import orjson
import pytest

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.records import SnapshotRequest

TICKER = (
    '{"stream":"btcusdt@bookTicker","data":{"u":5,"s":"BTCUSDT","b":"1.5","B":"2","a":"1.6",'
    '"A":"3"}}'
)
DEPTH = (
    '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":3,"u":4,'
    '"b":[["1.5","2"]],"a":[]}}'
)
AGG = (
    '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":9,"p":"1.5",'
    '"q":"2","f":1,"l":2,"T":1,"m":true,"M":true}}'
)


def rest(data: str, channel: str = "depth_snapshot") -> RawFrame:
    return RawFrame("rest", "binance", "r", 1, 1, data, channel)


def ws(data: str) -> RawFrame:
    return RawFrame("ws", "binance", "c", 1, 1, data)


BAD = [
    (ws(TICKER.replace('"1.5"', '"x"')), "not a number"),
    (ws(TICKER.replace('"u":5', '"u":"5"')), "must be an integer"),
    (ws(TICKER.replace("btcusdt@", "ethusdt@")), "arrived on stream"),
    (ws(DEPTH.replace('"U":3', '"U":7')), "U 7 > u 4"),
    (ws(DEPTH.replace('[["1.5","2"]]', '[["1.5"]]')), "level must be"),
    (ws(DEPTH.replace('"E":1,', "")), "'E' must be an integer"),
    (ws(AGG.replace('"p":"1.5"', '"p":"0"')), "must be positive"),
    (rest("nope"), "not JSON"),
    (rest('{"request":"x","response":{}}'), "with a symbol"),
    (rest('{"symbol":"BTCUSDT","response":{"bids":[],"asks":[]}}'), "lastUpdateId"),
    (rest('{"symbol":"BTCUSDT","response":{}}', "trades_backfill"), "must be a list"),
    (rest('{"serverTime":1}', "exchange_info"), "unknown REST channel 'exchange_info'"),
]


@pytest.mark.parametrize("frame,reason", BAD)
def test_malformed_market_data_is_dead_lettered(frame: RawFrame, reason: str) -> None:
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, [("1-0", frame), ("1-1", ws(TICKER))], 1)
    (letter,) = out.dead_letters
    assert reason in letter.reason and letter.data == frame.data
    assert [q.update_id for q in out.quotes] == ["5"]  # processing goes on


def test_a_bad_trade_of_a_backfill_page_is_one_dead_letter_and_the_others_stay() -> None:
    page = [
        {"id": 1, "price": "1.5", "qty": "2", "time": 1, "isBuyerMaker": True},
        {"id": 2},
        {"id": 3, "price": "1.6", "qty": "2", "time": 1, "isBuyerMaker": False},
    ]
    body = orjson.dumps({"symbol": "BTCUSDT", "response": page}).decode()
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, [("1-0", rest(body, "trades_backfill"))], 1)
    assert [t.trade_id for t in out.trades] == ["1", "3"]
    (letter,) = out.dead_letters
    assert "trade price" in letter.reason and orjson.loads(letter.data) == {"id": 2}


def test_a_response_given_as_text_is_decoded_too() -> None:
    body = {
        "symbol": "btcusdt",
        "request": "x",
        "response": '{"lastUpdateId":3,"bids":[],"asks":[]}',
    }
    state = PartitionState("binance:0", "binance")
    process_batch(state, [("1-0", rest(orjson.dumps(body).decode())), ("1-1", ws(DEPTH))], 1)
    book = state.books.book("BTCUSDT")
    assert book is not None and book.last_update_id == 4


def test_agg_trades_and_aggregate_backfills_share_the_id_space() -> None:
    backfill = {
        "symbol": "BTCUSDT",
        "request": "GET /api/v3/aggTrades",
        "response": [
            {"a": 8, "p": "1.4", "q": "1", "f": 1, "l": 1, "T": 1, "m": False, "M": True},
            {"a": 9, "p": "1.5", "q": "2", "f": 2, "l": 2, "T": 1, "m": True, "M": True},
        ],
    }
    state = PartitionState("binance:0", "binance")
    frames = [("1-0", ws(AGG.replace('"a":9', '"a":7'))), ("1-1", ws(AGG))]
    frames.append(("1-2", rest(orjson.dumps(backfill).decode(), "trades_backfill")))
    out = process_batch(state, frames, 1)
    assert [(t.trade_id, t.side, t.src) for t in out.trades] == [
        ("7", "sell", "1-0"),
        ("9", "sell", "1-1"),
        ("8", "buy", "1-2"),
    ]
    assert state.counters["duplicate_trades"] == 1 and state.counters["trades_backfilled"] == 1
    assert state.trade_ids.last == {"BTCUSDT@agg": 9}
    assert [g.stream for g in out.gaps] == ["aggTrades"]
    # A plain trade with the same number is another id space: not a duplicate.
    plain = AGG.replace("@aggTrade", "@trade").replace('"e":"aggTrade"', '"e":"trade"')
    plain = plain.replace('"a":9', '"t":9')
    again = process_batch(state, [("1-3", ws(plain))], 1)
    assert [t.trade_id for t in again.trades] == ["9"]


def test_snapshot_requests_are_control_entries() -> None:
    fields = SnapshotRequest("BTCUSDT", "no book", "1-0").to_fields()
    assert fields == {
        "v": "1",
        "action": "snapshot",
        "symbol": "BTCUSDT",
        "reason": "no book",
        "entry_id": "1-0",
    }
