"""Order books from snapshot plus diffs: golden runs over real captures, and the edge cases."""

from __future__ import annotations

import gzip
from functools import cache

import orjson
import pytest

from tests.realdata import REALDATA
from tickpipe.common.messages import DepthDiff, DepthSnapshot
from tickpipe.common.schema import RawFrame
from tickpipe.common.units import MS
from tickpipe.processor.books import MAX_BUFFERED, SNAPSHOT_RETRY_NS, BookKeeper, BookOutput
from tickpipe.processor.core import BatchOutput, PartitionState, process_batch
from tickpipe.processor.records import BookTop, GapRecord

HFT = REALDATA / "hftbacktest" / "spot"
CRYPTOFEED = REALDATA / "cryptofeed"
PARTITION = "binance:0"

Entries = list[tuple[str, RawFrame]]


def rest_frame(seq: int, ts_recv: int, symbol: str, body: object, url: str = "") -> RawFrame:
    """Wrap a REST depth response the way the ingestor writes it into raw."""
    data = {
        "symbol": symbol,
        "request": url or f"GET /api/v3/depth?symbol={symbol}",
        "response": body,
    }
    return RawFrame(
        "rest", "binance", "c1", seq, ts_recv, orjson.dumps(data).decode(), "depth_snapshot"
    )


@cache
def hftbacktest(*names: str) -> tuple[tuple[str, RawFrame], ...]:
    """Frames of hftbacktest captures ("<ns> <frame>" lines) as raw entries, files in order."""
    out: list[tuple[str, RawFrame]] = []
    for name in names:
        symbol = name.split("_")[0].upper()
        with gzip.open(HFT / name, "rt") as lines:
            for line in lines:
                recv, _, frame = line.rstrip("\n").partition(" ")
                seq = len(out)
                if frame.startswith('{"stream"'):
                    raw = RawFrame("ws", "binance", "c1", seq, int(recv), frame)
                else:  # the REST snapshot line: no wrapper, no "stream" key
                    raw = rest_frame(seq, int(recv), symbol, orjson.loads(frame))
                out.append((f"1723161254000-{seq}", raw))
    return tuple(out)


@cache
def cryptofeed(folder: str) -> tuple[tuple[str, RawFrame], ...]:
    """A cryptofeed capture: WebSocket frames and REST snapshots merged by receive time."""
    items: list[tuple[float, str, str]] = []
    with open(CRYPTOFEED / folder / "BINANCE.ws.1.0") as lines:
        next(lines)  # "<url> <-> <connect time>"
        for line in lines:
            if line.strip():
                ts, _, frame = line.rstrip("\n").partition(": ")
                items.append((float(ts), "ws", frame))
    with open(CRYPTOFEED / folder / "BINANCE.http.0.0") as lines:
        for line in lines:
            if line.strip():
                url, _, rest = line.rstrip("\n").partition(" -> ")
                ts, _, body = rest.partition(": ")
                items.append((float(ts), url, body))
    items.sort(key=lambda item: item[0])
    out: list[tuple[str, RawFrame]] = []
    for seq, (ts, kind, text) in enumerate(items):
        ts_ns = int(ts * 1e9)
        if kind == "ws":
            raw = RawFrame("ws", "binance", "c1", seq, ts_ns, text)
        else:
            symbol = kind.split("symbol=")[1].split("&")[0]
            raw = rest_frame(seq, ts_ns, symbol, orjson.loads(text), kind)
        out.append((f"1628952394000-{seq}", raw))
    return tuple(out)


def run(entries: Entries) -> tuple[PartitionState, BatchOutput]:
    state = PartitionState(PARTITION, "binance")
    return state, process_batch(state, entries, 1)


def compare_with_book_ticker(out: BatchOutput) -> int:
    """Assert every live top whose update id a bookTicker also carries equals it; count them."""
    quotes = {(q.symbol, q.update_id): q for q in out.quotes}
    matched = 0
    for top in out.book_tops:
        quote = quotes.get((top.symbol, top.update_id))
        if top.status == "live" and quote is not None:
            assert (top.bid_price, top.bid_qty, top.ask_price, top.ask_qty) == (
                quote.bid_price,
                quote.bid_qty,
                quote.ask_price,
                quote.ask_qty,
            ), top.update_id
            matched += 1
    return matched


def test_btcusdt_book_over_both_files_matches_book_ticker_without_a_gap() -> None:
    entries = list(hftbacktest("btcusdt_20240808.gz", "btcusdt_20240809.gz"))
    state, out = run(entries)
    c = state.counters
    assert (c["book_gaps"], c["snapshots"], c["snapshots_too_old"], out.gaps) == (0, 1, 0, [])
    assert c["depth_diffs"] == 3451 + 3044
    # Three diffs came before the snapshot: two are older than it, the third covers it.
    assert (c["diffs_buffered"], c["diffs_dropped"]) == (3, 2)
    assert [r.symbol for r in out.snapshot_requests] == ["BTCUSDT"]  # asked once, at the start
    book = state.books.book("BTCUSDT")
    assert book is not None and book.last_update_id == 50093696318
    stale, first = out.book_tops[:2]
    assert (stale.status, stale.update_id) == ("stale", "")  # no book until the snapshot
    assert int(first.update_id) == 50093239224  # line 6's diff, applied from the buffer
    assert [t.status for t in out.book_tops[1:]] == ["live"] * (len(out.book_tops) - 1)
    assert compare_with_book_ticker(out) > 1000
    assert len(state.books.book("BTCUSDT").bids.levels) > 900  # type: ignore[union-attr]


def test_ethusdt_book_matches_book_ticker_without_a_gap() -> None:
    state, out = run(list(hftbacktest("ethusdt_20240808.gz")))
    assert (state.counters["book_gaps"], state.counters["snapshots"]) == (0, 1)
    assert compare_with_book_ticker(out) > 300
    book = state.books.book("ETHUSDT")
    assert book is not None and book.last_update_id > 35346513512


@pytest.mark.parametrize("folder,symbols", [("20210814_4fe0297", 4), ("20210417_3525dc8", 10)])
def test_cryptofeed_books_for_every_symbol_match_book_ticker(folder: str, symbols: int) -> None:
    state, out = run(list(cryptofeed(folder)))
    c = state.counters
    assert (c["book_gaps"], c["snapshots"], c["snapshots_too_old"]) == (0, symbols, 0)
    assert out.dead_letters == [] and out.gaps == []
    live = {symbol for symbol, entry in state.books.symbols.items() if entry.book is not None}
    assert len(live) == symbols
    assert compare_with_book_ticker(out) > 50


def test_book_top_fields_are_readable() -> None:
    _, out = run(list(hftbacktest("btcusdt_20240808.gz"))[:20])
    top = next(t for t in out.book_tops if t.status == "live")
    fields = top.to_fields()
    assert fields["status"] == "live" and fields["depth"] == "10"
    bids = [level.split(":") for level in fields["bids"].split(",")]
    asks = [level.split(":") for level in fields["asks"].split(",")]
    assert len(bids) == len(asks) == 10
    assert bids[0] == [top.bid_price, top.bid_qty] and asks[0] == [top.ask_price, top.ask_qty]
    assert [float(p) for p, _ in bids] == sorted((float(p) for p, _ in bids), reverse=True)
    assert [float(p) for p, _ in asks] == sorted(float(p) for p, _ in asks)
    assert BookTop.from_fields(fields) == top


# -- edge cases on hand-made diffs -----------------------------------------------------------


def diff(first: int, last: int, bid: str = "100", qty: str = "1", ts_ms: int = 0) -> DepthDiff:
    return DepthDiff(
        "BTCUSDT", first, last, ((bid, qty),), (("200", "1"),), ts_ms * MS, 0, f"1-{first}"
    )


def snapshot(last_update_id: int) -> DepthSnapshot:
    return DepthSnapshot(
        "BTCUSDT", last_update_id, (("100", "5"), ("99", "1")), (("200", "1"),), 0, "s"
    )


def feed(keeper: BookKeeper, *items: DepthDiff | DepthSnapshot) -> BookOutput:
    out = BookOutput()
    for item in items:
        if isinstance(item, DepthDiff):
            keeper.on_diff(item, 7, out)
        else:
            keeper.on_snapshot(item, 7, out)
    return out


def test_first_diff_asks_for_a_snapshot_once_and_buffers() -> None:
    keeper = BookKeeper("binance")
    out = feed(keeper, diff(1, 5), diff(6, 9))
    assert [r.reason for r in out.requests] == ["no book"]
    assert keeper.book("BTCUSDT") is None and [t.status for t in out.tops] == ["stale"]
    out = feed(keeper, snapshot(7))  # diff 1-5 dropped, 6-9 covers 8
    assert keeper.book("BTCUSDT").last_update_id == 9  # type: ignore[union-attr]
    assert [t.update_id for t in out.tops] == ["9"]


def test_a_gap_discards_the_book_reports_it_and_requests_once() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, snapshot(10), diff(11, 12))
    out = feed(keeper, diff(14, 15), diff(16, 17))
    assert out.gaps == [
        GapRecord("binance", "BTCUSDT", "depth", "13", "14", "1-14", 0, 0, ts_proc=7)
    ]
    assert [(t.status, t.bids) for t in out.tops] == [("stale", "")]
    assert len(out.requests) == 1 and out.requests[0].reason.startswith("gap")
    assert keeper.book("BTCUSDT") is None
    out = feed(keeper, snapshot(15))  # a fresh snapshot resumes from the buffered diffs
    assert keeper.book("BTCUSDT").last_update_id == 17  # type: ignore[union-attr]
    assert out.requests == [] and out.gaps == []


def test_the_first_diff_after_a_snapshot_must_cover_it() -> None:
    keeper = BookKeeper("binance")
    out = feed(keeper, snapshot(10), diff(12, 14))
    assert [g.expected for g in out.gaps] == ["11"]
    keeper = BookKeeper("binance")
    out = feed(keeper, snapshot(10), diff(8, 14), diff(15, 15))  # overlapping first diff is fine
    assert out.gaps == [] and keeper.book("BTCUSDT").last_update_id == 15  # type: ignore[union-attr]


def test_an_overlap_after_the_first_diff_is_a_gap() -> None:
    keeper = BookKeeper("binance")
    out = feed(keeper, snapshot(10), diff(11, 14), diff(13, 16))
    assert [(g.expected, g.received) for g in out.gaps] == [("15", "13")]


def test_a_snapshot_older_than_the_buffer_asks_again() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, diff(20, 25))
    out = feed(keeper, snapshot(10))
    assert keeper.book("BTCUSDT") is None
    assert [r.reason for r in out.requests] == ["snapshot older than the buffered diffs"]
    assert keeper.counters["snapshots_too_old"] == 1
    feed(keeper, snapshot(22))
    assert keeper.book("BTCUSDT").last_update_id == 25  # type: ignore[union-attr]


def test_a_snapshot_while_live_is_ignored_and_old_diffs_dropped() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, snapshot(10), diff(11, 12))
    out = feed(keeper, snapshot(50), diff(5, 12))
    assert keeper.counters["snapshots_ignored"] == 1
    assert keeper.counters["diffs_dropped"] == 1 and out.tops == []


def test_a_missing_snapshot_is_asked_for_again_after_a_while() -> None:
    keeper = BookKeeper("binance")
    retry_ms = SNAPSHOT_RETRY_NS // MS
    out = feed(
        keeper, diff(1, 1, ts_ms=0), diff(2, 2, ts_ms=retry_ms - 1), diff(3, 3, ts_ms=retry_ms)
    )
    assert [r.reason for r in out.requests] == ["no book", "snapshot still missing"]


def test_the_buffer_is_bounded() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, *(diff(n, n) for n in range(1, MAX_BUFFERED + 11)))
    assert len(keeper.symbols["BTCUSDT"].buffer) == MAX_BUFFERED
    feed(keeper, snapshot(10))
    assert keeper.book("BTCUSDT").last_update_id == MAX_BUFFERED + 10  # type: ignore[union-attr]


def test_levels_are_removed_by_zero_quantity_and_tops_emitted_only_on_change() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, snapshot(10))
    out = feed(
        keeper,
        diff(11, 11, bid="100", qty="0"),
        diff(12, 12, bid="99", qty="1"),  # the same level again: nothing changed
        diff(13, 13, bid="50", qty="2"),
    )
    assert [(t.update_id, t.bids) for t in out.tops] == [("11", "99:1"), ("13", "99:1,50:2")]
    assert keeper.counters["depth_diffs"] == 3


def test_takeover_forgets_books_and_asks_again() -> None:
    state, _ = run(list(hftbacktest("btcusdt_20240808.gz"))[:200])
    restored = PartitionState.from_bytes(state.to_bytes(), PARTITION, "binance")
    assert restored.books.book("BTCUSDT") is None
    rest = [(eid, f) for eid, f in hftbacktest("btcusdt_20240808.gz")[200:400]]
    out = process_batch(restored, rest, 1)
    assert [r.symbol for r in out.snapshot_requests] == ["BTCUSDT"]
    assert [t.status for t in out.book_tops] == ["stale"]  # books are stale until a snapshot
    assert out.quotes  # quotes and trades go on meanwhile


def test_a_gap_inside_the_buffer_stops_the_replay_and_asks_again() -> None:
    keeper = BookKeeper("binance")
    feed(keeper, diff(1, 5), diff(6, 9), diff(12, 14), diff(15, 16))
    out = feed(keeper, snapshot(7))
    assert [(g.expected, g.received) for g in out.gaps] == [("10", "12")]
    assert [t.status for t in out.tops] == ["live", "stale"]
    assert [r.reason for r in out.requests] == ["gap: expected 10, got 12"]
    assert [d.first_id for d in keeper.symbols["BTCUSDT"].buffer] == [12, 15]
    feed(keeper, snapshot(13))
    assert keeper.book("BTCUSDT").last_update_id == 16  # type: ignore[union-attr]
