"""Reading recordings: format detection, snapshot symbols, cryptofeed times and REST answers."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.realdata import BTCUSDT_CAPTURE, REALDATA
from tickpipe.common.resp import encode_xadd
from tickpipe.common.schema import RawFrame
from tickpipe.tools.recordings import (
    REST_BODY,
    Recorded,
    RecordingStats,
    detect_format,
    read_recording,
    read_recordings,
)
from tickpipe.tools.replay import encode_raw

TRADE = '{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":1}}'
SNAP = '{"lastUpdateId":7,"bids":[["1.0","2.0"]],"asks":[]}'


def test_the_real_captures_are_recognised() -> None:
    assert detect_format(BTCUSDT_CAPTURE) == "hftbacktest"
    assert detect_format(REALDATA / "hftbacktest/spot/btcusdt_20230405.dat.gz") == "hftbacktest"
    cf = REALDATA / "cryptofeed/20210417_3525dc8"
    assert detect_format(cf / "BINANCE.ws.1.0") == "cryptofeed-ws"
    assert detect_format(cf / "BINANCE.http.0.0") == "cryptofeed-http"
    assert detect_format(REALDATA / "SOURCES.md") is None


def test_a_snapshot_before_any_frame_waits_for_the_files_symbol(tmp_path: Path) -> None:
    path = tmp_path / "eth.gz"
    with gzip.open(path, "wt") as f:
        f.write(f"1723161253937085768 {SNAP}\n\n1723161253937085769 {TRADE}\n")
    records = list(read_recording(path))
    assert records == [
        Recorded(1723161253937085768, SNAP, REST_BODY, "depth_snapshot", "ETHUSDT"),
        Recorded(1723161253937085769, TRADE, "ws", "", "ETHUSDT"),
    ]


def test_cryptofeed_times_urls_and_other_rest_answers(tmp_path: Path) -> None:
    ws, http = tmp_path / "BINANCE.ws.1.0", tmp_path / "BINANCE.http.0.0"
    ws.write_text(f"wss://x/stream?streams=ethusdt@trade <-> 1628952394.891941\n"
                  f"1628952397.7059772: {TRADE}\n")  # fmt: skip
    http.write_text(
        f"https://www.binance.com/api/v1/depth?symbol=ETHUSDT&limit=5000 -> 1628952396.2: {SNAP}\n"
        "https://api.binance.com/api/v3/exchangeInfo -> 1628952396.3: {}\n"
    )
    stats = RecordingStats()
    records = list(read_recordings([tmp_path], stats))
    assert records == [
        Recorded(1628952396_200000000, SNAP, REST_BODY, "depth_snapshot", "ETHUSDT"),
        Recorded(1628952397_705977200, TRADE, "ws", "", "ETHUSDT"),
    ]
    assert (stats.skipped_rest, stats.skipped_lines) == (1, 0)


def test_unknown_files_are_refused_with_what_is_read(tmp_path: Path) -> None:
    junk = tmp_path / "x.txt"
    junk.write_text("hello\n")
    with pytest.raises(ValueError, match="not a recording tickpipe reads"):
        read_recording(junk)
    with pytest.raises(ValueError, match="no recording found"):
        read_recordings([tmp_path])


def test_the_replay_encoding_is_the_raw_frame_xadd() -> None:
    frame = RawFrame("ws", "binance", "rep", 12, 1723161253937085768, TRADE + "é", "market")
    expected = encode_xadd("p:raw", frame.to_fields())
    got = encode_raw("p:raw", "ws", "binance", "rep", "market", 12, frame.ts_recv, frame.data)
    assert got == expected


def test_progress_is_the_share_of_the_stored_bytes_read() -> None:
    stats = RecordingStats()
    assert stats.fraction() is None
    records = read_recordings([REALDATA / "hftbacktest/spot/ethusdt_20240808.gz"], stats)
    next(records)
    early = stats.fraction()
    assert early is not None and 0 < early < 0.2
    assert sum(1 for _ in records) == 33_618 - 1  # every line of the file, the snapshot too
    assert stats.fraction() == 1.0
