"""The clients' local order book: snapshot plus sequenced diffs, gaps and resyncs (pure)."""

from __future__ import annotations

from tickpipe.common.messages import DepthDiff, DepthSnapshot
from tickpipe.venues.books import LocalBook, SequencedBook, Step


def diff(first: int, last: int, bids: tuple[tuple[str, str], ...] = ()) -> DepthDiff:
    return DepthDiff("BTCUSDT", first, last, bids, (), 0, 0, "")


def snapshot(last: int) -> DepthSnapshot:
    return DepthSnapshot("BTCUSDT", last, (("100.0", "1"), ("99.5", "2")), (("101.0", "1"),), 0, "")


def test_levels_are_absolute_and_zero_removes_a_level() -> None:
    book = LocalBook()
    book.replace([("100.0", "1"), ("99.5", "2"), ("100.5", "3")], [("101", "1"), ("102", "1")])
    book.apply([("100.5", "0.000"), ("99.5", "4")], [("101", "0")])
    assert book.top(2) == ((("100.0", "1"), ("99.5", "4")), (("102", "1"),))


def test_diffs_wait_for_a_snapshot_then_apply_in_order() -> None:
    book = SequencedBook()
    assert book.on_diff(diff(5, 7)) == Step(want_snapshot=True)
    assert book.on_diff(diff(8, 9, (("100.0", "5"),))) == Step()  # buffered, asked once
    assert book.on_snapshot(snapshot(6)) == Step(changed=True, resynced=True)
    assert book.update_id == 9 and book.book is not None
    assert book.book.top(1)[0] == (("100.0", "5"),)
    assert book.on_diff(diff(3, 9)) == Step()  # already in the book
    assert book.on_diff(diff(10, 10)) == Step(changed=True)


def test_a_snapshot_older_than_the_buffered_diffs_is_asked_again() -> None:
    book = SequencedBook()
    book.on_diff(diff(20, 25))
    assert book.on_snapshot(snapshot(10)) == Step(want_snapshot=True)
    assert book.book is None
    assert book.on_snapshot(snapshot(22)) == Step(changed=True, resynced=True)


def test_a_gap_discards_the_book_and_asks_for_a_snapshot() -> None:
    book = SequencedBook()
    book.on_diff(diff(1, 1))
    book.on_snapshot(snapshot(1))
    book.on_diff(diff(2, 3))
    assert book.on_diff(diff(5, 6)) == Step(want_snapshot=True, gap=True)
    assert book.book is None and book.gaps == 1
    assert book.on_snapshot(snapshot(5)) == Step(changed=True, resynced=True)
    assert book.update_id == 6
