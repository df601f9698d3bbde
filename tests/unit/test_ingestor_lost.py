"""Unit tests of finding the frames Redis lost of those the writer appended."""

from __future__ import annotations

from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.lost import WrittenTail


def frame(seq: int, conn: str = "c1", kind: str = "ws") -> RawFrame:
    return RawFrame(kind, "binance", conn, seq, 1_000 + seq, f'{{"n":{seq}}}', "market")


def test_what_was_written_after_the_newest_frame_held_is_lost() -> None:
    written = [frame(n) for n in range(1, 11)]
    tail = WrittenTail(written)
    held = [frame(n) for n in range(7, 0, -1)]  # Redis kept 1..7, read back newest first
    assert tail.find(held[:1])
    assert tail.lost() == written[7:]


def test_entries_of_other_writers_are_passed_over() -> None:
    written = [frame(n) for n in range(1, 6)]
    tail = WrittenTail(written)
    foreign = [frame(1, conn="replay"), frame(2, conn="replay")]
    assert not tail.find(foreign)
    assert tail.find([*foreign, frame(4), frame(3)])
    assert tail.lost() == [frame(5)]


def test_nothing_is_lost_when_the_newest_frame_is_held() -> None:
    written = [frame(1), frame(1, kind="marker"), frame(2)]
    tail = WrittenTail(written)
    assert tail.find([frame(2)]) and tail.lost() == []


def test_everything_is_lost_when_none_of_it_is_held() -> None:
    written = [frame(n) for n in range(1, 4)]
    tail = WrittenTail(written)
    assert not tail.find([frame(99)])
    assert tail.lost() == written
