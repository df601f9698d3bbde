"""Write and read the mock exchange's ground-truth log: one JSON object per line.

The writer records every trade frame sent (``trade_sent``), every order received (``order``),
every executionReport sent (``execution_report``), connects and disconnects. Each line is
flushed as it is written, so tests can read the file while the mock runs; the reader ignores a
trailing partial line.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import orjson

__all__ = [
    "GroundTruth",
    "GroundTruthWriter",
    "read_ground_truth",
    "trade_record",
    "user_event_record",
]


def trade_record(stream: str, trade: Any) -> dict[str, Any]:
    """Return the ``trade_sent`` record of a trade frame (``trade``: a market SimTrade)."""
    return {
        "ev": "trade_sent",
        "stream": stream,
        "symbol": trade.symbol,
        "trade_id": trade.trade_id,
        "price": trade.price,
        "qty": trade.qty,
        "T": trade.trade_time_ms,
        "m": trade.buyer_is_maker,
    }


def user_event_record(conn_id: int, message: dict[str, Any]) -> dict[str, Any] | None:
    """Return the ``execution_report`` record of a user-data message (None for other events)."""
    event = message.get("event", message)
    if event.get("e") != "executionReport":
        return None
    return {
        "ev": "execution_report",
        "conn": conn_id,
        "subscription_id": message.get("subscriptionId"),
        "client_order_id": event["c"],
        "order_id": event["i"],
        "symbol": event["s"],
        "x": event["x"],
        "X": event["X"],
        "l": event["l"],
        "L": event["L"],
        "z": event["z"],
        "t": event["t"],
        "E": event["E"],
    }


class GroundTruthWriter:
    """Append ground-truth events to a JSON-lines file; a writer without a path does nothing."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._file: IO[bytes] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab", buffering=0)

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def write(self, ev: str, **fields: Any) -> None:
        """Append one event line ``{"ev": ev, ...fields}``."""
        if self._file is None:
            return
        self._file.write(orjson.dumps({"ev": ev, **fields}) + b"\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class GroundTruth:
    """Parsed ground-truth events with helpers for the end-to-end comparisons."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events

    def events(self, ev: str | None = None) -> list[dict[str, Any]]:
        """Return every event, or only those whose ``ev`` is ``ev``, in log order."""
        return [e for e in self._events if ev is None or e.get("ev") == ev]

    def trades_sent(self) -> list[dict[str, Any]]:
        """Return each trade sent at least once, deduplicated by ``(symbol, trade_id)``."""
        seen: dict[tuple[str, int], dict[str, Any]] = {}
        for e in self.events("trade_sent"):
            key = (e["symbol"], e["trade_id"])
            if key not in seen:
                seen[key] = {k: e[k] for k in ("symbol", "trade_id", "price", "qty", "T", "m")}
        return list(seen.values())

    def orders(self) -> list[dict[str, Any]]:
        """Return every order received (accepted or rejected), in arrival order."""
        return self.events("order")


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Read a ground-truth file; a missing file reads as empty."""
    file = Path(path)
    if not file.exists():
        return GroundTruth([])
    events = []
    for line in file.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a line still being written
    return GroundTruth(events)
