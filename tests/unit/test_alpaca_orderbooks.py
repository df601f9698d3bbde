"""Alpaca crypto order books reach the partition's book stream like any other venue's."""

from __future__ import annotations

import orjson

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import PartitionState, process_batch

T0 = "2024-03-12T10:38:50.79613221Z"
T0_NS = 1_710_239_930_796_132_210


# The documented shape (Alpaca Market Data API, "Real-time crypto data": order books, T "o";
# "r": true marks a full book, as sent when the subscription starts).
def book(symbol: str, bids: list, asks: list, *, reset: bool = False, t: str = T0) -> dict:
    msg = {"T": "o", "S": symbol, "t": t, "b": bids, "a": asks}
    return {**msg, "r": True} if reset else msg


def frames(*messages: list[dict]) -> list[tuple[str, RawFrame]]:
    return [
        (f"1-{n}", RawFrame("ws", "alpaca", "c1", n + 1, 9, orjson.dumps(m).decode()))
        for n, m in enumerate(messages)
    ]


def test_books_are_built_from_the_full_book_and_its_updates() -> None:
    state = PartitionState("alpaca:0", "alpaca")
    out = process_batch(
        state,
        frames(
            [book("BTC/USD", [{"p": 1, "s": 1}], [])],  # before the full book: dropped
            [
                book(
                    "BTC/USD",
                    [{"p": 71859.53, "s": 0.27994}, {"p": 71858.1, "s": 1.5}],
                    [{"p": 71862.75, "s": 0.5}, {"p": 71863, "s": 2}],
                    reset=True,
                )
            ],
            [book("BTC/USD", [{"p": 71859.53, "s": 0}], [{"p": 71861.5, "s": 0.1}])],
            [
                book("ETH/USD", [], [{"p": 4000, "s": 1}], reset=True),
                book("BTC/USD", [{"p": 71860, "s": 0.3}], []),
            ],
        ),
        42,
    )
    assert out.dead_letters == []
    tops = [(t.symbol, t.status, t.update_id, t.bid_price, t.bid_qty, t.ask_price, t.ask_qty)
            for t in out.book_tops]  # fmt: skip
    assert tops == [
        ("BTC/USD", "live", "0", "71859.53", "0.27994", "71862.75", "0.5"),
        ("BTC/USD", "live", "1", "71858.1", "1.5", "71861.5", "0.1"),
        ("ETH/USD", "live", "0", "", "", "4000", "1"),
        ("BTC/USD", "live", "2", "71860", "0.3", "71861.5", "0.1"),
    ]
    second = out.book_tops[1]
    assert second.bids == "71858.1:1.5" and second.asks.split(",")[:2] == [
        "71861.5:0.1", "71862.75:0.5",
    ]  # fmt: skip
    assert second.ts_event == T0_NS and second.ts_proc == 42
    c = state.counters
    assert (c["book_updates"], c["book_updates_unsynced"]) == (5, 1)
    assert "ignored:orderbooks" not in c


def test_a_malformed_book_message_is_a_dead_letter_and_the_rest_of_the_frame_counts() -> None:
    state = PartitionState("alpaca:0", "alpaca")
    bad = book("BTC/USD", [{"p": "x", "s": 1}], [], reset=True)
    good = book("ETH/USD", [{"p": 3999, "s": 2}], [{"p": 4000, "s": 1}], reset=True)
    out = process_batch(state, frames([bad, good]), 1)
    (letter,) = out.dead_letters
    assert "level price" in letter.reason
    assert [(t.symbol, t.bid_price) for t in out.book_tops] == [("ETH/USD", "3999")]
