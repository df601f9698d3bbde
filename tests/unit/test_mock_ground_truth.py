"""Unit tests of the ground-truth log writer and reader."""

from __future__ import annotations

from pathlib import Path

from tickpipe.mock_ws.ground_truth import GroundTruthWriter, read_ground_truth


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "gt" / "truth.jsonl"
    writer = GroundTruthWriter(path)
    trade = {
        "symbol": "BTCUSDT",
        "trade_id": 1,
        "price": "1.00000000",
        "qty": "2.00000000",
        "T": 10,
        "m": True,
    }
    writer.write("connect", conn=1, path="/ws")
    writer.write("trade_sent", conn=1, stream="btcusdt@trade", ts=5, **trade)
    # Readable while the writer is still open (flushed per line).
    assert len(read_ground_truth(path).events()) == 2
    writer.write("trade_sent", conn=2, stream="btcusdt@trade", ts=6, **trade)
    writer.write("trade_sent", conn=2, stream="btcusdt@trade", ts=6, **{**trade, "trade_id": 2})
    writer.write("order", client_order_id="c", order_id=1, status="FILLED")
    writer.close()
    with path.open("ab") as f:
        f.write(b'{"ev":"trade_se')  # a line cut mid-write
    truth = read_ground_truth(path)
    assert [t["trade_id"] for t in truth.trades_sent()] == [1, 2]
    assert truth.trades_sent()[0] == trade
    assert [o["client_order_id"] for o in truth.orders()] == ["c"]
    assert len(truth.events("trade_sent")) == 3
    assert len(truth.events()) == 5


def test_disabled_writer_and_missing_file(tmp_path: Path) -> None:
    writer = GroundTruthWriter(None)
    assert not writer.enabled
    writer.write("connect", conn=1)
    writer.close()
    assert read_ground_truth(tmp_path / "absent.jsonl").events() == []
