"""Define the processor's own output records: book tops, gaps and their resolutions, requests.

They follow :class:`common.schema.Event`'s encoding (one readable field per attribute plus ``v``),
so ``redis-cli XRANGE`` shows them as they are. Book levels are written ``price:qty,price:qty``,
best first. The ``gaps`` stream holds two kinds of entries, told apart by ``kind``: ``gap`` (a
hole was seen) and ``resolution`` (a trade-id hole was backfilled, or given up with the reason).
The ``control`` stream gets the ingestor's requests: ``snapshot`` and ``backfill``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tickpipe.common.contract import ControlAction
from tickpipe.common.messages import TradeCorrection, VenueStatus, format_levels, readable
from tickpipe.common.schema import SCHEMA_VERSION, Event

__all__ = [
    "BackfillRequest",
    "BookTop",
    "GapRecord",
    "GapResolution",
    "SnapshotRequest",
    "TradeCorrection",
    "VenueStatus",
    "format_levels",
]


@dataclass(frozen=True, slots=True)
class BookTop(Event):
    """Top of book and the top ``depth`` levels of one symbol after an update.

    ``status`` is ``live``, or ``stale`` when the book was discarded after a gap (levels empty)
    until a fresh snapshot arrives. ``bids``/``asks`` are ``price:qty,...``, best first.
    """

    kind: ClassVar[str] = "book_top"
    venue: str
    symbol: str
    update_id: str
    status: str
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    depth: int
    bids: str
    asks: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0


@dataclass(frozen=True, slots=True)
class GapRecord(Event):
    """A hole in a sequence: ``stream`` is ``depth`` (update ids), ``trades`` (trade ids) or
    ``aggTrades`` (aggregate trade ids).

    ``expected`` is the id that should have come next, ``received`` the one that came;
    ``entry_id`` is the raw entry that revealed the gap.
    """

    kind: ClassVar[str] = "gap"
    venue: str
    symbol: str
    stream: str
    expected: str
    received: str
    entry_id: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0

    def to_fields(self) -> dict[str, str]:
        """Return ``v``, ``kind=gap`` and one readable field per attribute."""
        fields = Event.to_fields(self)
        return {"v": fields.pop("v"), "kind": "gap", **fields}


@dataclass(frozen=True, slots=True)
class GapResolution:
    """What became of a trade-id hole: ``status`` ``backfilled``, or ``unrecoverable`` with the
    ``reason``; ``missing`` counts the ids of ``first_id..last_id`` still missing.

    ``entry_id`` is the raw entry that settled it (the last backfill page, or the ingestor's
    ``backfill_done`` marker).
    """

    venue: str
    symbol: str
    stream: str
    first_id: int
    last_id: int
    status: str
    reason: str
    missing: int
    entry_id: str
    ts_proc: int = 0

    def to_fields(self) -> dict[str, str]:
        """Return ``v``, ``kind=resolution`` and one readable field per attribute."""
        return readable(self, {"v": SCHEMA_VERSION, "kind": "resolution"})


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """Ask the ingestor for a REST backfill of trade ids ``first_id..last_id`` (inclusive).

    ``stream`` is ``trades`` or ``aggTrades`` (which id space); a ``control`` entry.
    """

    symbol: str
    stream: str
    first_id: int
    last_id: int
    reason: str
    entry_id: str = ""

    def to_fields(self) -> dict[str, str]:
        """Return the control entry: ``action=backfill``, ``symbol``, ``first_id``, ``last_id``,
        ``stream``, ``reason``, ``entry_id``."""
        return {
            "v": SCHEMA_VERSION,
            "action": ControlAction.BACKFILL.value,
            "symbol": self.symbol,
            "first_id": str(self.first_id),
            "last_id": str(self.last_id),
            "stream": self.stream,
            "reason": self.reason,
            "entry_id": self.entry_id,
        }


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Ask the ingestor for a fresh REST depth snapshot of ``symbol`` (a ``control`` entry)."""

    symbol: str
    reason: str
    entry_id: str = ""

    def to_fields(self) -> dict[str, str]:
        """Return the control entry: ``action=snapshot``, ``symbol``, ``reason``, ``entry_id``."""
        return {
            "v": SCHEMA_VERSION,
            "action": ControlAction.SNAPSHOT.value,
            "symbol": self.symbol,
            "reason": self.reason,
            "entry_id": self.entry_id,
        }
