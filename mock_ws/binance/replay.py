"""Read recorded Binance sessions for replay and keep their order books (pure, no sockets).

Two recorder formats are understood (see ``shared/realdata/SOURCES.md``):

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

import gzip
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from tickpipe.venues.books import LocalBook

__all__ = ["ReplayBook", "ReplayEvent", "Snapshot", "load_recording"]

_CRYPTOFEED_HTTP = re.compile(r"^(?P<url>\S+) -> (?P<t>[0-9.]+): (?P<body>.*)$")
_SYMBOL_RE = re.compile(r"symbol=([A-Za-z0-9]+)")


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


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode().splitlines()


def _hftbacktest(path: Path, events: list[ReplayEvent], snaps: list[Snapshot]) -> None:
    symbol = path.name.split("_")[0].upper()
    for line in _lines(path):
        stamp, _, text = line.partition(" ")
        if not stamp.isdigit() or not text:
            continue
        t_ns = int(stamp) * (1000 if len(stamp) <= 16 else 1)
        frame = orjson.loads(text)
        if "stream" in frame:
            events.append(ReplayEvent(t_ns, frame["stream"], frame["data"]))
            symbol = frame["stream"].partition("@")[0].upper()
        elif "lastUpdateId" in frame:
            snaps.append(Snapshot(t_ns, symbol, frame))


def _cryptofeed_ws(path: Path, events: list[ReplayEvent]) -> None:
    for line in _lines(path)[1:]:
        stamp, sep, text = line.partition(": ")
        if not sep:
            continue
        frame = orjson.loads(text)
        if isinstance(frame, dict) and "stream" in frame:
            events.append(ReplayEvent(int(Decimal(stamp) * 10**9), frame["stream"], frame["data"]))


def _cryptofeed_http(path: Path, snaps: list[Snapshot]) -> None:
    for line in _lines(path):
        match = _CRYPTOFEED_HTTP.match(line)
        symbol = _SYMBOL_RE.search(match["url"]) if match else None
        if match is None or symbol is None:
            continue
        body = orjson.loads(match["body"])
        if isinstance(body, dict) and "lastUpdateId" in body:
            snaps.append(Snapshot(int(Decimal(match["t"]) * 10**9), symbol[1].upper(), body))


def load_recording(path: str | Path) -> tuple[list[ReplayEvent], list[Snapshot]]:
    """Load a recording file or directory; return events by receive time and snapshots."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    events: list[ReplayEvent] = []
    snaps: list[Snapshot] = []
    for file in files:
        if file.name.startswith("BINANCE.ws."):
            _cryptofeed_ws(file, events)
        elif file.name.startswith("BINANCE.http."):
            _cryptofeed_http(file, snaps)
        elif file.suffix == ".gz":
            _hftbacktest(file, events, snaps)
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
