"""No single frame can stop bars from becoming final: implausible events are dead letters.

Each poison is one live trade among ordinary ones: a time centuries ahead, a time in 1970, a
quantity or price of zero, a negative one. The trades after it must come out, the bars must keep
becoming final, and the poison must be a dead letter whose reason says what is wrong with it.
"""

from __future__ import annotations

import orjson
import pytest

from tickpipe.common.schema import RawFrame, Trade
from tickpipe.processor.core import BadEntry, PartitionState, process_batch

BASE_MS = 1_723_161_254_000
MS = 1_000_000
Entries = list[tuple[str, RawFrame | BadEntry]]


def trade_frame(trade_id: int, *, t_ms: int, price: str = "100.5", qty: str = "0.01") -> str:
    payload = {
        "e": "trade", "E": t_ms, "s": "BTCUSDT", "t": trade_id, "p": price, "q": qty,
        "T": t_ms, "m": False,
    }  # fmt: skip
    return orjson.dumps({"stream": "btcusdt@trade", "data": payload}).decode()


def live(trade_id: int, recv_ms: int, **kw: object) -> tuple[str, RawFrame]:
    """A trade received 50 ms after it happened (``t_ms`` overrides its time)."""
    t_ms = int(kw.pop("t_ms", recv_ms - 50))  # type: ignore[call-overload]
    data = trade_frame(trade_id, t_ms=t_ms, **kw)  # type: ignore[arg-type]
    return f"{recv_ms}-{trade_id}", RawFrame("ws", "binance", "c1", trade_id, recv_ms * MS, data)


def stream(poison: dict[str, object], count: int = 60, at: int = 20) -> Entries:
    """``count`` trades 100 ms apart; trade ``at`` carries ``poison``."""
    out: Entries = []
    for n in range(1, count + 1):
        recv_ms = BASE_MS + n * 100
        out.append(live(n, recv_ms, **(poison if n == at else {})))
    return out


POISONS = {
    "year 2286": ({"t_ms": 9_999_999_999_999}, "ahead of its receive time"),
    "1970": ({"t_ms": 1000}, "older than its receive time"),
    "quantity 0": ({"qty": "0.00000000"}, "quantity must be above zero"),
    "price 0": ({"price": "0.00000000"}, "price must be positive"),
    "negative price": ({"price": "-100.5"}, "non-negative"),
    "negative quantity": ({"qty": "-1"}, "non-negative"),
}


@pytest.mark.parametrize("name", list(POISONS))
def test_one_poison_trade_is_a_dead_letter_and_bars_keep_becoming_final(name: str) -> None:
    poison, reason = POISONS[name]
    entries = stream(poison)
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, entries, 1)
    assert [int(t.trade_id) for t in out.trades] == [n for n in range(1, 61) if n != 20]
    (letter,) = out.dead_letters
    assert letter.entry_id == entries[19][0] and reason in letter.reason
    # The watermark follows the ordinary trades, so every second before it is a final bar.
    newest_ms = BASE_MS + 60 * 100 - 50
    assert state.bars.max_ts_event == newest_ms * MS
    finals = {b.ts_open for b in out.bars if b.final and b.interval == "1s"}
    first_s, last_s = (BASE_MS + 50) // 1000, (newest_ms - 2000) // 1000  # lateness 2 s
    assert finals == {s * 1000 * MS for s in range(first_s, last_s)}
    assert state.counters["late_trades"] == 0


def test_the_poisons_id_is_asked_for_again_so_a_sound_copy_can_fill_it() -> None:
    out = process_batch(PartitionState("binance:0", "binance"), stream(POISONS["1970"][0]), 1)
    assert [(g.expected, g.received) for g in out.gaps] == [("20", "21")]
    assert [(r.symbol, r.first_id, r.last_id) for r in out.backfill_requests] == [
        ("BTCUSDT", 20, 20)
    ]


def test_a_backfill_keeps_its_old_times_but_not_times_ahead() -> None:
    fetched_ms = BASE_MS + 3 * 3_600_000  # three hours after the trades
    page = [
        {"id": n, "price": "100.5", "qty": "0.01", "time": BASE_MS + n, "isBuyerMaker": False}
        for n in range(2, 6)
    ]
    page[2]["time"] = fetched_ms + 60_000  # a minute after it was fetched
    body = orjson.dumps({"symbol": "BTCUSDT", "response": page}).decode()
    rest = RawFrame("rest", "binance", "rest/1", 1, fetched_ms * MS, body, "trades_backfill")
    entries: Entries = [live(1, BASE_MS + 100), live(6, BASE_MS + 200), (f"{fetched_ms}-0", rest)]
    out = process_batch(PartitionState("binance:0", "binance"), entries, 1)
    assert [t.trade_id for t in out.trades] == ["1", "6", "2", "3", "5"]
    (letter,) = out.dead_letters
    assert "trade 4 of BTCUSDT" in letter.reason and "ahead of its receive time" in letter.reason


def test_depth_diffs_and_quotes_ahead_of_their_receive_time_are_dead_letters() -> None:
    recv_ms = BASE_MS + 100
    diff = {"e": "depthUpdate", "E": 9_999_999_999_999, "s": "BTCUSDT", "U": 1, "u": 2,
            "b": [["100", "1"]], "a": []}  # fmt: skip
    quote = {"u": 5, "s": "BTCUSDT", "b": "100", "B": "1", "a": "101", "A": "1",
             "E": 9_999_999_999_999}  # fmt: skip
    frames = [
        {"stream": "btcusdt@depth@100ms", "data": diff},
        {"stream": "btcusdt@bookTicker", "data": quote},
    ]
    entries: Entries = [
        (
            f"{recv_ms}-{n}",
            RawFrame("ws", "binance", "c1", n, recv_ms * MS, orjson.dumps(f).decode()),
        )
        for n, f in enumerate(frames)
    ]
    entries.append(live(1, recv_ms + 10))
    state = PartitionState("binance:0", "binance")
    out = process_batch(state, entries, 1)
    reasons = [d.reason for d in out.dead_letters]
    assert len(reasons) == 2 and all("ahead of its receive time" in r for r in reasons)
    assert reasons[0].startswith("depth update 2 of BTCUSDT")
    assert reasons[1].startswith("quote 5 of BTCUSDT")
    assert state.bars.max_ts_event == (recv_ms + 10 - 50) * MS
    assert out.quotes == [] and state.counters["depth_diffs"] == 0


def test_a_quote_with_an_empty_side_is_kept_and_a_price_without_size_is_not() -> None:
    recv_ms = BASE_MS + 100
    quotes = [
        {"u": 5, "s": "BTCUSDT", "b": "0.00", "B": "0.00", "a": "101", "A": "1"},  # no bids
        {"u": 6, "s": "BTCUSDT", "b": "100", "B": "0.00", "a": "101", "A": "1"},
    ]
    entries: Entries = [
        (f"{recv_ms}-{n}", RawFrame("ws", "binance", "c1", n, recv_ms * MS, orjson.dumps(
            {"stream": "btcusdt@bookTicker", "data": q}).decode()))
        for n, q in enumerate(quotes)
    ]  # fmt: skip
    out = process_batch(PartitionState("binance:0", "binance"), entries, 1)
    assert [q.update_id for q in out.quotes] == ["5"]
    (letter,) = out.dead_letters
    assert "bid price '100' and size '0.00' must both be above zero" in letter.reason


def _poisoned_checkpoint() -> bytes:
    """A checkpoint as one written before event times were checked: one trade of year 2286 got
    into the bars (and the watermark) after 30 ordinary trades."""
    state = PartitionState("binance:0", "binance")
    process_batch(state, stream({}, count=30), 1)
    poison = Trade("binance", "BTCUSDT", "31", "100.5", "0.01", "buy", 9_999_999_999_999 * MS, 0)
    state.trade_ids.see("BTCUSDT", 31)
    state.bars.on_trade(poison)
    assert state.bars.watermark > 9_999_999_990_000 * MS
    return state.to_bytes()


def test_a_poisoned_checkpoint_is_repaired_when_loaded_and_bars_become_final_again() -> None:
    state = PartitionState.from_bytes(_poisoned_checkpoint(), "binance:0", "binance")
    later = [live(n, BASE_MS + n * 100) for n in range(32, 80)]
    out = process_batch(state, later, 1)
    assert [int(t.trade_id) for t in out.trades] == list(range(32, 80))
    assert out.dead_letters == [] and state.counters["late_trades"] == 0
    newest_ms = BASE_MS + 79 * 100 - 50
    assert state.bars.max_ts_event == newest_ms * MS
    finals = sorted({b.ts_open for b in out.bars if b.final and b.interval == "1s"})
    # The seconds before the poison were finalised (and emitted) when it came; from the next one
    # on, every second up to the watermark becomes final again.
    first_s = (BASE_MS + 32 * 100 - 50) // 1000
    assert finals == [s * 1000 * MS for s in range(first_s, (newest_ms - 2000) // 1000)]
    (warning,) = [w for w in out.warnings if "watermark repaired" in w]
    assert "2 bars beyond it dropped" in warning  # the poison's 1 s and 1 m bars
    assert state.counters["watermark_repairs"] == 1
    # Checked once: the next batch does not look again.
    assert process_batch(state, [live(80, BASE_MS + 8000)], 1).warnings == []
