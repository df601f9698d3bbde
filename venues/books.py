"""Keep a client's local order book (pure: no I/O, no clock).

:class:`LocalBook` holds price levels as the venue's decimal strings; a quantity of zero removes
a level. :class:`SequencedBook` adds the snapshot-plus-diffs procedure of venues whose depth
diffs carry update ids ``U``..``u`` (Binance): with no book, diffs are buffered and a snapshot is
wanted; a snapshot drops the buffered diffs it already covers and applies the rest, unless the
first left does not reach it (too old: another is wanted); live, each diff must start at the
book's id + 1 (the first after a snapshot may straddle it), anything else is a gap that discards
the book and wants a new snapshot. Venues that send a whole book on (re)subscription (Alpaca's
``r: true`` orderbook messages) only need :class:`LocalBook`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tickpipe.common.messages import DepthDiff, DepthSnapshot, Level

__all__ = ["LocalBook", "SequencedBook", "Step"]


class LocalBook:
    """Bid and ask levels, price text -> quantity text, best first on demand."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Make the book exactly these levels."""
        self.bids, self.asks = {}, {}
        self.apply(bids, asks)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set each level's quantity (absolute); zero removes the level."""
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty

    def top(self, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """Return the best ``depth`` bids (highest first) and asks (lowest first)."""
        bids = sorted(self.bids.items(), key=lambda kv: Decimal(kv[0]), reverse=True)[:depth]
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))[:depth]
        return tuple(bids), tuple(asks)


@dataclass(frozen=True, slots=True)
class Step:
    """What one diff or snapshot did: the book changed (``resynced``: rebuilt), or wants one."""

    changed: bool = False
    resynced: bool = False
    want_snapshot: bool = False
    gap: bool = False


class SequencedBook:
    """One symbol's book kept from a snapshot plus sequenced diffs (module docstring)."""

    def __init__(self, max_buffered: int = 5000) -> None:
        self.book: LocalBook | None = None
        self.update_id = 0
        self.buffer: deque[DepthDiff] = deque(maxlen=max_buffered)
        self._first_after_snapshot = False
        self.gaps = 0

    def on_diff(self, diff: DepthDiff) -> Step:
        """Apply or buffer one diff."""
        if self.book is None:
            wanted = not self.buffer
            self.buffer.append(diff)
            return Step(want_snapshot=wanted)
        if diff.last_id <= self.update_id:
            return Step()  # already in the book
        start_ok = (
            diff.first_id <= self.update_id + 1
            if self._first_after_snapshot
            else diff.first_id == self.update_id + 1
        )
        if not start_ok:
            self.gaps += 1
            self.book = None
            self.buffer.clear()
            self.buffer.append(diff)
            return Step(want_snapshot=True, gap=True)
        self._apply(diff)
        return Step(changed=True)

    def on_snapshot(self, snap: DepthSnapshot) -> Step:
        """Rebuild the book from ``snap`` and the buffered diffs it does not cover."""
        if self.book is not None:
            return Step()
        left = [d for d in self.buffer if d.last_id > snap.last_update_id]
        if left and left[0].first_id > snap.last_update_id + 1:
            return Step(want_snapshot=True)  # too old: the diffs moved past it
        self.book = LocalBook()
        self.book.replace(snap.bids, snap.asks)
        self.update_id = snap.last_update_id
        self._first_after_snapshot = True
        self.buffer.clear()
        for diff in left:
            step = self.on_diff(diff)
            if step.gap:
                return step
        return Step(changed=True, resynced=True)

    def _apply(self, diff: DepthDiff) -> None:
        assert self.book is not None
        self.book.apply(diff.bids, diff.asks)
        self.update_id = diff.last_id
        self._first_after_snapshot = False
