"""Binance rolling-window tickers become typed entries of the partition's ``tickers`` stream."""

from __future__ import annotations

import orjson
import pytest

from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.lanes import PartitionLane

# The documented shapes (Binance Spot WebSocket Streams, "Individual Symbol Ticker Streams").
FULL = {"e": "24hrTicker", "E": 1672515782136, "s": "BNBBTC", "p": "0.0015", "P": "250.00",
        "w": "0.0018", "x": "0.0009", "c": "0.0025", "Q": "10", "b": "0.0024", "B": "10",
        "a": "0.0026", "A": "100", "o": "0.0010", "h": "0.0025", "l": "0.0010", "v": "10000",
        "q": "18", "O": 0, "C": 86400000, "F": 0, "L": 18150, "n": 18151}  # fmt: skip
MINI = {"e": "24hrMiniTicker", "E": 1672515782136, "s": "BNBBTC", "c": "0.0025", "o": "0.0010",
        "h": "0.0025", "l": "0.0010", "v": "10000", "q": "18"}  # fmt: skip
WINDOW = {**{k: v for k, v in FULL.items() if k not in "xQbBaA"}, "e": "1hTicker"}


def _frame(stream: str, payload: dict) -> RawFrame:
    data = orjson.dumps({"stream": stream, "data": payload}).decode()
    return RawFrame("ws", "binance", "c1", 1, 7, data)


def test_full_mini_and_window_tickers_are_written_to_the_tickers_stream() -> None:
    settings = Settings(namespace="tk", symbols=("BNBBTC",))
    partition = Partition("binance", 0)
    lane = PartitionLane(settings, partition)
    lane.load(None)
    entries = [
        ("1-0", _frame("bnbbtc@ticker", FULL)),
        ("1-1", _frame("bnbbtc@miniTicker", MINI)),
        ("1-2", _frame("bnbbtc@ticker_1h", WINDOW)),
    ]
    commit = lane.process(entries, 99)
    key = Keys("tk").tickers(partition)
    written = [fields for stream, fields in commit.outputs if stream == key]
    assert len(written) == 3
    full, mini, hour = written
    assert full["window"] == "24h" and full["last"] == "0.0025" and full["price_change"] == "0.0015"
    assert (full["bid_price"], full["ask_price"], full["trades"]) == ("0.0024", "0.0026", "18151")
    assert (full["first_trade_id"], full["last_trade_id"]) == ("0", "18150")
    assert full["ts_event"] == str(1672515782136 * 1_000_000) and full["ts_close"] == str(
        86400000 * 1_000_000
    )
    assert full["ts_recv"] == "7" and full["ts_proc"] == "99" and full["symbol"] == "BNBBTC"
    assert (mini["window"], mini["last"], mini["volume"], mini["quote_volume"]) == (
        "24h", "0.0025", "10000", "18",
    )  # fmt: skip
    assert mini["price_change"] == mini["bid_price"] == mini["last_trade_id"] == ""
    assert hour["window"] == "1h" and hour["bid_price"] == ""
    assert commit.stats["tickers"] == 3


@pytest.mark.parametrize(
    "payload,reason",
    [({**FULL, "c": "-1"}, "'c'"), ({**FULL, "n": "many"}, "'n'"),
     ({**FULL, "s": "ETHBTC"}, "stream")],
)  # fmt: skip
def test_a_malformed_ticker_is_a_dead_letter_with_the_reason(payload: dict, reason: str) -> None:
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, [("1-0", _frame("bnbbtc@ticker", payload))], 1)
    (letter,) = out.dead_letters
    assert reason in letter.reason
    assert out.tickers == []
