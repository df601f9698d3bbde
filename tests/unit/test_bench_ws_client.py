"""The WebSocket client benchmark's summary: medians, ranges and ratios to websockets per scheme."""

from __future__ import annotations

import math

from bench.ws_client_cost import Sample, summarize


def test_summary_pairs_each_client_with_websockets_on_the_same_scheme() -> None:
    samples = [
        Sample("websockets", "wss", 4.0),
        Sample("picows", "wss", 1.0),
        Sample("websockets", "wss", 5.0),
        Sample("picows", "wss", 2.0),
        Sample("websockets", "wss", 6.0),
        Sample("picows", "wss", 0.5),
        Sample("websockets", "ws", 2.0),
        Sample("picows", "ws", 1.0),
    ]
    rows = {(r["scheme"], r["client"]): r for r in summarize(samples)}
    assert rows["wss", "websockets"]["median"] == 5.0
    assert rows["wss", "picows"] == {
        "scheme": "wss",
        "client": "picows",
        "median": 1.0,
        "min": 0.5,
        "max": 2.0,
        "n": 3,
        "ratio": 0.2,
        "saved": 4.0,
    }
    assert rows["ws", "picows"]["ratio"] == 0.5
    assert rows["ws", "websockets"]["ratio"] == 1.0


def test_summary_without_the_reference_gives_no_ratio() -> None:
    (row,) = summarize([Sample("picows", "ws", 1.0)])
    assert math.isnan(row["ratio"])
    assert row["median"] == 1.0 and row["n"] == 1
