"""Trade-id holes: asked for, kept open, resolved as backfilled or unrecoverable (pure core).

The ingestor side is played here by hand, with exactly the entries the contract names: REST
pages (kind ``rest``, channel ``trades_backfill``) and then one ``backfill_done`` marker.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import BadEntry, BatchOutput, PartitionState, process_batch
from tickpipe.processor.holes import Holes
from tickpipe.processor.tradeids import MAX_MISSING_RANGES, TradeIds

BASE_MS = 1_723_161_254_000
MS = 1_000_000
Entries = list[tuple[str, RawFrame | BadEntry]]


class Raw:
    """Build raw entries with rising ids, as the ingestor would write them."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self, frame: RawFrame) -> tuple[str, RawFrame]:
        self.n += 1
        return f"{BASE_MS + self.n}-0", frame

    def live(self, trade_id: int, *, agg: bool = False) -> tuple[str, RawFrame]:
        t_ms = BASE_MS + trade_id
        if agg:
            payload: dict[str, Any] = {"e": "aggTrade", "E": t_ms, "s": "BTCUSDT", "a": trade_id,
                                       "p": "100.5", "q": "0.01", "f": 1, "l": 1, "T": t_ms,
                                       "m": False}  # fmt: skip
        else:
            payload = {"e": "trade", "E": t_ms, "s": "BTCUSDT", "t": trade_id, "p": "100.5",
                       "q": "0.01", "T": t_ms, "m": False}  # fmt: skip
        stream = "btcusdt@aggTrade" if agg else "btcusdt@trade"
        data = orjson.dumps({"stream": stream, "data": payload}).decode()
        return self._next(RawFrame("ws", "binance", "m/run1.1", 1, (t_ms + 50) * MS, data))

    def page(self, ids: list[int], *, agg: bool = False) -> tuple[str, RawFrame]:
        if agg:
            items = [{"a": i, "p": "100.5", "q": "0.01", "f": 1, "l": 1, "T": BASE_MS + i,
                      "m": False} for i in ids]  # fmt: skip
        else:
            items = [{"id": i, "price": "100.5", "qty": "0.01", "time": BASE_MS + i,
                      "isBuyerMaker": False} for i in ids]  # fmt: skip
        body = {"symbol": "BTCUSDT", "request": {}, "reason": "gap", "response": items}
        data = orjson.dumps(body).decode()
        recv = (BASE_MS + 60_000) * MS
        return self._next(RawFrame("rest", "binance", "rest/1", 1, recv, data, "trades_backfill"))

    def done(self, first: int, last: int, **kw: Any) -> tuple[str, RawFrame]:
        event = {"event": "backfill_done", "symbol": "BTCUSDT", "stream": "trades",
                 "first_id": first, "last_id": last, "fetched": 0, "outcome": "complete",
                 "error": "", **kw}  # fmt: skip
        data = orjson.dumps(event).decode()
        return self._next(RawFrame("marker", "binance", "rest/1", 0, 1, data, "trades_backfill"))

    def connect(self, conn: str) -> tuple[str, RawFrame]:
        data = orjson.dumps({"event": "connect", "conn": conn, "url": "ws://x"}).decode()
        return self._next(RawFrame("marker", "binance", conn, 0, 1, data, "market"))


def run(
    entries: Entries, state: PartitionState | None = None
) -> tuple[PartitionState, BatchOutput]:
    state = state or PartitionState("binance:0", "binance")
    return state, process_batch(state, entries, 7)


def test_a_gap_asks_for_a_backfill_with_the_contract_fields_and_keeps_the_hole_open() -> None:
    raw = Raw()
    entries = [raw.live(1), raw.live(2), raw.live(6)]
    state, out = run(entries)
    (request,) = out.backfill_requests
    assert request.to_fields() == {
        "v": "1", "action": "backfill", "symbol": "BTCUSDT", "first_id": "3", "last_id": "5",
        "stream": "trades", "reason": "trade id gap: expected 3, got 6",
        "entry_id": entries[2][0],
    }  # fmt: skip
    (gap,) = out.gaps
    assert gap.to_fields()["kind"] == "gap"
    assert state.holes.open == [["BTCUSDT", "trades", 3, 5]]
    assert any(
        "ids 3..5 of BTCUSDT (trades) missing: backfill requested" in w for w in out.warnings
    )
    assert state.counters["backfill_requests"] == 1


def test_backfilled_trades_fill_the_hole_and_resolve_it() -> None:
    raw = Raw()
    state, _ = run([raw.live(1), raw.live(6)])
    _, out = run([raw.page([2, 3])], state)
    assert out.resolutions == [] and state.holes.open  # 4 and 5 still missing
    page = raw.page([4, 5])
    _, out = run([page, raw.done(2, 5, fetched=4)], state)
    (resolution,) = out.resolutions
    assert resolution.to_fields() == {
        "v": "1", "kind": "resolution", "venue": "binance", "symbol": "BTCUSDT",
        "stream": "trades", "first_id": "2", "last_id": "5", "status": "backfilled",
        "reason": "every missing trade came back", "missing": "0", "entry_id": page[0],
        "ts_proc": "7",
    }  # fmt: skip
    assert state.holes.open == [] and state.counters["holes_backfilled"] == 1
    assert any("ids 2..5 of BTCUSDT (trades) backfilled" in w for w in out.warnings)


@pytest.mark.parametrize(
    "marker,reason",
    [
        ({"outcome": "complete", "fetched": 1}, "venue returned no trades for ids 3..4, 6"),
        ({"outcome": "failed", "error": "HTTP 400: too old"}, "backfill failed: HTTP 400: too old"),
        ({"outcome": "partial", "fetched": 1}, "backfill partial: venue returned no trades for"),
    ],
)
def test_a_finished_backfill_that_left_ids_missing_makes_them_unrecoverable(
    marker: dict[str, Any], reason: str
) -> None:
    raw = Raw()
    state, _ = run([raw.live(1), raw.live(7)])
    page = raw.page([2, 5])
    done = raw.done(2, 6, **marker)
    _, out = run([page, done], state)
    (resolution,) = out.resolutions
    assert (resolution.status, resolution.missing, resolution.entry_id) == (
        "unrecoverable", 3, done[0],
    )  # fmt: skip
    assert reason in resolution.reason
    assert state.holes.open == [] and state.counters["holes_unrecoverable"] == 1
    # A trade that comes later still fills its id (it was missing, not a duplicate).
    _, out = run([raw.page([3])], state)
    assert [t.trade_id for t in out.trades] == ["3"] and out.resolutions == []


def test_an_ingestor_that_restarts_is_asked_again_for_every_open_hole_once() -> None:
    raw = Raw()
    state, out = run([raw.connect("binance:0/run1.1"), raw.live(1), raw.live(5), raw.live(9)])
    assert len(out.backfill_requests) == 2
    _, out = run([raw.connect("binance:0/run1.2"), raw.connect("binance:0s1/run1.1")], state)
    assert out.backfill_requests == []  # the same ingestor run reconnecting: it got them live
    connect = raw.connect("binance:0/run2.1")
    _, out = run([connect, raw.connect("binance:0s1/run2.1")], state)
    assert [(r.first_id, r.last_id, r.entry_id) for r in out.backfill_requests] == [
        (2, 4, connect[0]), (6, 8, connect[0]),
    ]  # fmt: skip
    assert all("ingestor run run2 connected" in r.reason for r in out.backfill_requests)


def test_aggregate_ids_are_a_hole_space_of_their_own() -> None:
    raw = Raw()
    state, out = run([raw.live(1), raw.live(1, agg=True), raw.live(4, agg=True), raw.live(2)])
    (request,) = out.backfill_requests
    assert (request.stream, request.first_id, request.last_id) == ("aggTrades", 2, 3)
    _, out = run([raw.page([2, 3], agg=True)], state)
    (resolution,) = out.resolutions
    assert (resolution.stream, resolution.status) == ("aggTrades", "backfilled")


def test_holes_survive_a_checkpoint_and_any_batch_split_gives_the_same_records() -> None:
    raw = Raw()
    entries = [raw.connect("m/run1.1"), raw.live(1), raw.live(4), raw.live(8), raw.page([2, 3]),
               raw.connect("m/run2.1"), raw.page([5]), raw.done(5, 7, fetched=1),
               raw.live(9)]  # fmt: skip

    def records(cuts: list[int]) -> list[dict[str, str]]:
        state = PartitionState("binance:0", "binance")
        got: list[dict[str, str]] = []
        for a, b in zip([0, *cuts], [*cuts, len(entries)], strict=True):
            out = process_batch(state, entries[a:b], 7)
            got += [r.to_fields() for r in (*out.backfill_requests, *out.resolutions)]
            state = PartitionState.from_bytes(state.to_bytes(), "binance:0", "binance")
        return got

    whole = records([])
    # Two asks, one hole backfilled, the other asked for again, then given up.
    assert sorted(r.get("action") or r["status"] for r in whole) == [
        "backfill", "backfill", "backfill", "backfilled", "unrecoverable",
    ]  # fmt: skip
    for cuts in ([1], [3, 5], [2, 4, 6, 7], list(range(1, len(entries)))):
        assert sorted(map(str, records(cuts))) == sorted(map(str, whole)), cuts


def test_more_holes_than_the_tracker_keeps_give_the_oldest_up_loudly() -> None:
    raw = Raw()
    entries = [raw.live(3 * n) for n in range(1, MAX_MISSING_RANGES + 3)]
    state, out = run(entries)
    given_up = [r for r in out.resolutions if r.status == "unrecoverable"]
    assert [(r.first_id, r.last_id, r.missing) for r in given_up] == [(4, 5, 2)]
    assert "the oldest given up" in given_up[0].reason
    assert len(state.holes.open) == MAX_MISSING_RANGES


def test_a_malformed_backfill_done_marker_is_a_dead_letter() -> None:
    raw = Raw()
    entry = raw.done(2, 1)
    _, out = run([entry])
    (letter,) = out.dead_letters
    assert letter.entry_id == entry[0] and "first_id 2 > last_id 1" in letter.reason


def test_holes_count_only_ids_still_missing() -> None:
    ids = TradeIds()
    holes = Holes("binance", ids)
    ids.see("X", 1)
    ids.see("X", 10)
    holes.open_hole("X", "trades", 2, 9, "1-0", 0)
    ids.see("X", 4)
    ids.see("X", 5)
    assert holes.missing(["X", "trades", 2, 9]) == [(2, 3), (6, 9)]
