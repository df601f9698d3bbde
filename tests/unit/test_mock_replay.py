"""Unit tests: reading both recorder formats and rebuilding books from real frames."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.realdata import BTCUSDT_CAPTURE, REALDATA
from tickpipe.mock_ws.binance.replay import ReplayBook, load_recording
from tickpipe.mock_ws.binance.replay_shell import Replayer, replay_symbols


def test_cryptofeed_directory_loads_frames_and_snapshots() -> None:
    events, snaps = load_recording(REALDATA / "cryptofeed" / "20210814_4fe0297")
    assert len(events) == 1003 and len(snaps) == 4
    assert sorted(replay_symbols(events)) == ["BADGERBTC", "FTMUSDT", "SXPBTC", "XMRBTC"]
    assert [e.t_ns for e in events] == sorted(e.t_ns for e in events)
    kinds = {e.stream.partition("@")[2] for e in events}
    assert kinds == {"depth@100ms", "bookTicker", "aggTrade", "kline_1m"}
    assert {s.symbol: s.body["lastUpdateId"] for s in snaps}["XMRBTC"] == 717720857


def test_hftbacktest_formats_and_time_units() -> None:
    events, snaps = load_recording(REALDATA / "hftbacktest" / "spot" / "btcusdt_20230405.dat.gz")
    assert len(events) == 15088 and snaps == []
    assert events[0].t_ns == 1680652800004107000  # microseconds in the file
    events, snaps = load_recording(REALDATA / "hftbacktest" / "spot" / "ethusdt_20240808.gz")
    assert len(events) == 33617 and [s.body["lastUpdateId"] for s in snaps] == [35346513512]
    assert events[0].t_ns > 1_700_000_000 * 10**9  # nanoseconds in the file


def test_replay_book_syncs_like_a_client_and_never_crosses() -> None:
    events, snaps = load_recording(BTCUSDT_CAPTURE)
    replayer = Replayer(events, snaps)
    book = replayer.books["BTCUSDT"]
    assert book.last_update_id == 50093239218
    applied = 0
    previous = None
    for event in events:
        if event.payload.get("e") != "depthUpdate":
            continue
        if book.apply_diff(event.payload):
            if previous is not None:
                assert event.payload["U"] == previous + 1
            previous = event.payload["u"]
            applied += 1
            if applied % 200 == 0:
                snap = book.snapshot(1)
                assert Decimal(snap["bids"][0][0]) < Decimal(snap["asks"][0][0])
    assert applied > 3000 and book.last_update_id == previous
    assert replayer.depth("BTCUSDT", 5)["lastUpdateId"] == previous


def test_unreadable_recordings_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.gz").write_bytes(b"")
    with pytest.raises(ValueError):
        load_recording(tmp_path)
    fresh = ReplayBook("X")
    assert fresh.snapshot(5) == {"lastUpdateId": 0, "bids": [], "asks": []}
