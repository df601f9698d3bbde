"""Track the trade ids seen per symbol: duplicates, gaps and the backfills that fill them (pure).

Per symbol the tracker keeps the highest id seen and the ranges skipped below it (at most
:data:`MAX_MISSING_RANGES`, oldest forgotten; :meth:`TradeIds.take_forgotten` tells which). A
new id above the highest is accepted (a jump records the skipped range and reports the gap); an
id inside a skipped range is a backfill: it is accepted and the range shrinks; any other id at
or below the highest is a duplicate.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["MAX_MISSING_RANGES", "RECENT_IDS", "RecentIds", "TradeIds"]

MAX_MISSING_RANGES = 64
#: How many recent trade ids per symbol :class:`RecentIds` remembers.
RECENT_IDS = 1024


class TradeIds:
    """Highest trade id and missing ranges per symbol; checkpointable."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.missing: dict[str, list[list[int]]] = {}  # symbol -> [[first, last], ...] inclusive
        self._forgotten: list[tuple[str, int, int]] = []

    def see(self, symbol: str, trade_id: int) -> tuple[str, int | None]:
        """Classify ``trade_id``: ``new``, ``backfill`` or ``duplicate``.

        The second value is the id that was expected when this one opened a gap, else ``None``.
        """
        last = self.last.get(symbol)
        if last is None:
            self.last[symbol] = trade_id
            return "new", None
        if trade_id > last:
            self.last[symbol] = trade_id
            if trade_id == last + 1:
                return "new", None
            ranges = self.missing.setdefault(symbol, [])
            ranges.append([last + 1, trade_id - 1])
            if len(ranges) > MAX_MISSING_RANGES:
                self._forgotten += [(symbol, a, b) for a, b in ranges[:-MAX_MISSING_RANGES]]
                del ranges[:-MAX_MISSING_RANGES]
            return "new", last + 1
        ranges = self.missing.get(symbol, [])
        for n, (first, end) in enumerate(ranges):
            if first <= trade_id <= end:
                parts = [[first, trade_id - 1], [trade_id + 1, end]]
                ranges[n : n + 1] = [p for p in parts if p[0] <= p[1]]
                if not ranges:
                    del self.missing[symbol]
                return "backfill", None
        return "duplicate", None

    def take_forgotten(self) -> list[tuple[str, int, int]]:
        """Return (and clear) the ``(symbol, first, last)`` ranges forgotten since the last call."""
        out, self._forgotten = self._forgotten, []
        return out

    def to_state(self) -> dict[str, Any]:
        """Return msgpack-friendly values (checkpoint)."""
        return {"last": self.last, "missing": self.missing}

    def load_state(self, data: dict[str, Any]) -> None:
        """Replace the state with one saved by :meth:`to_state`."""
        self.last = {str(k): int(v) for k, v in data["last"].items()}
        self.missing = {
            str(k): [[int(a), int(b)] for a, b in v] for k, v in data["missing"].items()
        }


class RecentIds:
    """The last ``window`` trade ids seen per symbol, for venues whose ids are not contiguous.

    Alpaca trade ids are unique per symbol but skip values, so a jump says nothing about a missing
    trade: an id is a duplicate exactly when it is among the recent ones. Checkpointable.
    """

    def __init__(self, window: int = RECENT_IDS) -> None:
        self.window = window
        self.recent: dict[str, deque[int]] = {}
        self._sets: dict[str, set[int]] = {}

    def seen(self, symbol: str, trade_id: int) -> bool:
        """Tell whether ``trade_id`` of ``symbol`` came before; remember it if not."""
        ids = self._sets.setdefault(symbol, set())
        if trade_id in ids:
            return True
        queue = self.recent.setdefault(symbol, deque())
        queue.append(trade_id)
        ids.add(trade_id)
        if len(queue) > self.window:
            ids.discard(queue.popleft())
        return False

    def to_state(self) -> dict[str, list[int]]:
        """Return msgpack-friendly values (checkpoint), oldest id first."""
        return {symbol: list(queue) for symbol, queue in self.recent.items()}

    def load_state(self, data: dict[str, Any]) -> None:
        """Replace the state with one saved by :meth:`to_state`."""
        self.recent = {str(k): deque(int(i) for i in v) for k, v in data.items()}
        self._sets = {k: set(v) for k, v in self.recent.items()}
