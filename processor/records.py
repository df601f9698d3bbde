"""Define the processor's own output records: book tops, gap records and snapshot requests.

They follow :class:`common.schema.Event`'s encoding (one readable field per attribute plus ``v``),
so ``redis-cli XRANGE`` shows them as they are. Book levels are written ``price:qty,price:qty``,
best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from common.schema import SCHEMA_VERSION, Event

__all__ = ["BookTop", "GapRecord", "SnapshotRequest", "format_levels"]


def format_levels(levels: list[tuple[str, str]]) -> str:
    """Render ``[(price, qty), ...]`` as ``price:qty,price:qty``."""
    return ",".join(f"{price}:{qty}" for price, qty in levels)


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
            "action": "snapshot",
            "symbol": self.symbol,
            "reason": self.reason,
            "entry_id": self.entry_id,
        }
