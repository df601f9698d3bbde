"""Read recorded Binance sessions for replay and keep their order books (pure, no sockets).

Two recorder formats are understood (see ``shared/realdata/SOURCES.md``), read by
:mod:`tools.recordings` as ``tickpipe replay`` reads them:

* hftbacktest: gzip text, one line per frame, ``<receive time> <frame>``; the time is in
  nanoseconds (19 digits) or microseconds (16 digits); frames are combined-stream wrappers, and
  a bare ``{"lastUpdateId": ...}`` line is a REST depth snapshot of the file's symbol.
* cryptofeed ``raw_data_collection``: ``BINANCE.ws.*`` (first line ``<url> <-> <time>``, then
  ``<float seconds>: <frame>``) and ``BINANCE.http.*`` (``<url> -> <float seconds>: <body>``,
  depth snapshots with ``symbol=`` in the URL).

A path may be one file or a directory (every recording under it, merged by receive time).
:class:`ReplayBook` applies snapshots and diffs the way a client would (diffs with ``u`` at or
below the snapshot's ``lastUpdateId`` are dropped), so ``GET /api/v3/depth`` during a replay is
consistent with the diffs sent so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tickpipe.tools.recordings import REST_BODY, detect_format, read_recordings
from tickpipe.venues.books import LocalBook

__all__ = ["ReplayBook", "ReplayEvent", "Snapshot", "load_recording"]

#: The recorder formats replayed (a ``tickpipe export raw`` file is for ``tickpipe replay``).
_FORMATS = ("hftbacktest", "cryptofeed-ws", "cryptofeed-http")


@dataclass(frozen=True)
class ReplayEvent:
    """One recorded market frame: receive time (ns), stream name and payload."""

    t_ns: int
    stream: str
    payload: Any


@dataclass(frozen=True)
class Snapshot:
    """One recorded REST depth snapshot."""

    t_ns: int
    symbol: str
    body: dict[str, Any]


def load_recording(path: str | Path) -> tuple[list[ReplayEvent], list[Snapshot]]:
    """Load a recording file or directory (every recording under it, at any depth) with
    :func:`tools.recordings.read_recordings`; return its market frames by receive time and its
    REST depth snapshots."""
    root = Path(path)
    files = [p for p in sorted(root.rglob("*")) if p.is_file()] if root.is_dir() else [root]
    readable = [p for p in files if detect_format(p) in _FORMATS]
    events: list[ReplayEvent] = []
    snaps: list[Snapshot] = []
    for recorded in read_recordings(readable) if readable else ():
        body = orjson.loads(recorded.data)
        if not isinstance(body, dict):
            continue
        if recorded.kind == REST_BODY and recorded.symbol and "lastUpdateId" in body:
            snaps.append(Snapshot(recorded.ts_recv, recorded.symbol, body))
        elif recorded.kind == "ws" and "stream" in body:
            events.append(ReplayEvent(recorded.ts_recv, body["stream"], body["data"]))
    if not events:
        raise ValueError(f"{root}: no recorded Binance frames found")
    events.sort(key=lambda e: e.t_ns)
    snaps.sort(key=lambda s: s.t_ns)
    return events, snaps


class ReplayBook:
    """The order book of one replayed symbol, built from a snapshot and the diffs sent."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = LocalBook()
        self.last_update_id = 0

    def apply_snapshot(self, body: dict[str, Any]) -> None:
        self.book.replace(body["bids"], body["asks"])
        self.last_update_id = int(body["lastUpdateId"])

    def apply_diff(self, payload: dict[str, Any]) -> bool:
        """Apply a depthUpdate unless it is older than the book; tell whether it applied."""
        if int(payload["u"]) <= self.last_update_id:
            return False
        self.book.apply(payload["b"], payload["a"])
        self.last_update_id = int(payload["u"])
        return True

    def snapshot(self, limit: int) -> dict[str, Any]:
        """Return the ``GET /api/v3/depth`` body at the replay position."""
        bids, asks = self.book.top(limit)
        return {
            "lastUpdateId": self.last_update_id,
            "bids": [[p, q] for p, q in bids],
            "asks": [[p, q] for p, q in asks],
        }
