"""Keep local order books from a REST snapshot plus depth diffs (pure, no I/O).

Binance's documented procedure, per symbol:

1. With no book, diffs are buffered (at most :data:`MAX_BUFFERED`, oldest dropped); the first
   one emits a ``stale`` top and one snapshot request (again after :data:`SNAPSHOT_RETRY_NS` of
   exchange time without an answer).
2. A snapshot drops buffered diffs with ``u <= lastUpdateId``. If the first one left does not
   cover ``lastUpdateId + 1`` the snapshot is too old: another is requested and the buffer kept.
   Otherwise book := snapshot and the rest of the buffer is applied.
3. Live: a diff with ``u <= book id`` is ignored; the first diff applied after a snapshot must
   satisfy ``U <= id + 1 <= u``, every later one ``U == id + 1``. Anything else is a gap: the book
   is discarded (reported ``stale``), a :class:`GapRecord` is emitted, a snapshot is requested
   once, and diffs are buffered again from the one that revealed the gap.

A snapshot that arrives while the book is live is ignored (the book is already exact). Books are
large and derivable, so they are not checkpointed: a member that takes a partition over starts
with every book missing. The whole keeper is a pure function of the frames fed to it.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from tickpipe.common.messages import BookUpdate, DepthDiff, DepthSnapshot, Level
from tickpipe.processor.records import BookTop, GapRecord, SnapshotRequest, format_levels

__all__ = [
    "BOOK_COUNTERS",
    "BOOK_DEPTH",
    "MAX_BUFFERED",
    "SNAPSHOT_RETRY_NS",
    "BookKeeper",
    "BookOutput",
    "DepthDiff",
    "DepthSnapshot",
    "OrderBook",
]

BOOK_DEPTH = 10
MAX_BUFFERED = 3000
#: Ask again when a requested snapshot has not come within this much exchange time.
SNAPSHOT_RETRY_NS = 10_000_000_000


#: Counters the keeper adds to (in the caller's dict when one is given).
BOOK_COUNTERS = (
    "depth_diffs",  # diffs seen
    "diffs_buffered",  # diffs held while a book was missing
    "diffs_dropped",  # diffs older than the book, or pushed out of a full buffer
    "book_gaps",  # gaps in update ids: book discarded
    "snapshots",  # REST snapshots seen
    "snapshots_too_old",  # snapshots that did not reach the buffered diffs
    "snapshots_ignored",  # snapshots that came while the book was live
    "snapshot_requests",  # control entries asking for a snapshot
    "book_updates",  # absolute-level updates of venues without update ids (Alpaca crypto)
    "book_updates_unsynced",  # such updates before the venue's full book: dropped
)


@dataclass
class BookOutput:
    """What feeding the keeper produced."""

    tops: list[BookTop] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    requests: list[SnapshotRequest] = field(default_factory=list)


class _Side:
    """One side of a book: price -> (price text, qty text), with the best N kept sorted.

    Prices are keyed by ``float``: the venue's decimal strings have far fewer than 15
    significant digits, so the floats order exactly as the decimals do. Bids are stored under the
    negated price so that both sides sort ascending from best to worst.
    """

    def __init__(self, descending: bool) -> None:
        self.sign = -1.0 if descending else 1.0
        self.levels: dict[float, Level] = {}
        self._top: list[float] | None = []  # best-first sort keys; None = recompute

    def set(self, price: str, qty: str) -> None:
        key = self.sign * float(price)
        top = self._top
        if float(qty) == 0:
            if self.levels.pop(key, None) is not None and top is not None:
                if len(top) < BOOK_DEPTH:
                    if key in top:
                        top.remove(key)
                elif key <= top[-1]:
                    self._top = None  # a top level went: the next best must be found
            return
        known = key in self.levels
        self.levels[key] = (price, qty)
        if known or top is None:
            return
        if len(top) < BOOK_DEPTH or key < top[-1]:
            bisect.insort(top, key)
            del top[BOOK_DEPTH:]

    def best(self, n: int = BOOK_DEPTH) -> list[Level]:
        if self._top is None:
            self._top = heapq.nsmallest(BOOK_DEPTH, self.levels)
        return [self.levels[k] for k in self._top[:n]]


class OrderBook:
    """A price-level book: both sides and the update id it is exact at."""

    def __init__(self, last_update_id: int, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.last_update_id = last_update_id
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        for price, qty in bids:
            self.bids.set(price, qty)
        for price, qty in asks:
            self.asks.set(price, qty)

    def apply(self, diff: DepthDiff) -> None:
        """Apply a diff's levels (qty 0 removes a level) and move the book id to its ``u``."""
        for price, qty in diff.bids:
            self.bids.set(price, qty)
        for price, qty in diff.asks:
            self.asks.set(price, qty)
        self.last_update_id = diff.last_id

    def top(self, n: int = BOOK_DEPTH) -> tuple[list[Level], list[Level]]:
        """Return the best ``n`` bid and ask levels, best first."""
        return self.bids.best(n), self.asks.best(n)


@dataclass
class _Symbol:
    book: OrderBook | None = None
    synced: bool = False  # a diff was applied since the snapshot
    buffer: list[DepthDiff] = field(default_factory=list)
    requested_at: int | None = None  # exchange time of the outstanding snapshot request
    last_top: tuple[tuple[Level, ...], tuple[Level, ...]] | None = None


class BookKeeper:
    """Every order book of a partition, fed diffs and snapshots in stream order."""

    def __init__(
        self, venue: str, depth: int = BOOK_DEPTH, counters: dict[str, int] | None = None
    ) -> None:
        self.venue = venue
        self.depth = depth
        self.symbols: dict[str, _Symbol] = {}
        self.counters = {} if counters is None else counters
        for name in BOOK_COUNTERS:
            self.counters.setdefault(name, 0)

    def book(self, symbol: str) -> OrderBook | None:
        """Return the live book of ``symbol``, or ``None`` while it is missing or stale."""
        entry = self.symbols.get(symbol)
        return entry.book if entry else None

    def on_diff(self, diff: DepthDiff, ts_now: int, out: BookOutput) -> None:
        """Feed one diff."""
        self.counters["depth_diffs"] += 1
        self._on_diff(diff, ts_now, out)

    def _on_diff(self, diff: DepthDiff, ts_now: int, out: BookOutput) -> None:
        entry = self.symbols.setdefault(diff.symbol, _Symbol())
        book = entry.book
        if book is None:
            self._buffer(entry, diff, ts_now, out)
            return
        if diff.last_id <= book.last_update_id:
            self.counters["diffs_dropped"] += 1
            return
        expected = book.last_update_id + 1
        fits = diff.first_id <= expected if not entry.synced else diff.first_id == expected
        if not fits:
            self._gap(entry, diff, expected, ts_now, out)
            return
        book.apply(diff)
        entry.synced = True
        self._emit_top(entry, diff.symbol, diff.ts_event, diff.ts_recv, ts_now, out)

    def on_snapshot(self, snap: DepthSnapshot, ts_now: int, out: BookOutput) -> None:
        """Feed one REST snapshot."""
        self.counters["snapshots"] += 1
        entry = self.symbols.setdefault(snap.symbol, _Symbol())
        if entry.book is not None:
            self.counters["snapshots_ignored"] += 1
            return
        entry.requested_at = None
        lid = snap.last_update_id
        pending = [d for d in entry.buffer if d.last_id > lid]
        self.counters["diffs_dropped"] += len(entry.buffer) - len(pending)
        if pending and pending[0].first_id > lid + 1:
            self.counters["snapshots_too_old"] += 1
            entry.buffer = pending
            self._request(entry, snap.symbol, "snapshot older than the buffered diffs", out)
            entry.requested_at = pending[-1].ts_event
            return
        entry.buffer = []
        entry.book = OrderBook(lid, snap.bids, snap.asks)
        entry.synced = False
        if not pending:  # a snapshot has no event time: its receive time stands in
            self._emit_top(entry, snap.symbol, snap.ts_recv, snap.ts_recv, ts_now, out)
        for n, diff in enumerate(pending):
            self._on_diff(diff, ts_now, out)
            if entry.book is None:  # a gap inside the buffer: the rest waits for a snapshot
                entry.buffer.extend(pending[n + 1 :])
                return

    def on_update(self, update: BookUpdate, ts_now: int, out: BookOutput) -> None:
        """Feed absolute levels of a venue without update ids (Alpaca crypto order books).

        A ``reset`` replaces the book; other updates change the levels they name. The book's
        id counts the updates since its last reset. Updates before any reset (a takeover
        between two of them) are dropped and counted: the venue resends the whole book when it
        is subscribed again.
        """
        self.counters["book_updates"] += 1
        entry = self.symbols.setdefault(update.symbol, _Symbol())
        if update.reset:
            entry.book = OrderBook(0, update.bids, update.asks)
            entry.synced = True
        elif entry.book is None:
            self.counters["book_updates_unsynced"] += 1
            return
        else:
            book = entry.book
            for price, qty in update.bids:
                book.bids.set(price, qty)
            for price, qty in update.asks:
                book.asks.set(price, qty)
            book.last_update_id += 1
        self._emit_top(entry, update.symbol, update.ts_event, update.ts_recv, ts_now, out)

    def _buffer(self, entry: _Symbol, diff: DepthDiff, ts_now: int, out: BookOutput) -> None:
        entry.buffer.append(diff)
        self.counters["diffs_buffered"] += 1
        if len(entry.buffer) > MAX_BUFFERED:
            del entry.buffer[0]
            self.counters["diffs_dropped"] += 1
        if entry.requested_at is None:
            # First diff without a book (start, or a takeover): say so, and ask for one.
            out.tops.append(self._stale_record(diff, ts_now))
            self._request(entry, diff.symbol, "no book", out, diff.entry_id)
            entry.requested_at = diff.ts_event
        elif diff.ts_event - entry.requested_at >= SNAPSHOT_RETRY_NS:
            self._request(entry, diff.symbol, "snapshot still missing", out, diff.entry_id)
            entry.requested_at = diff.ts_event

    def _request(
        self, entry: _Symbol, symbol: str, reason: str, out: BookOutput, entry_id: str = ""
    ) -> None:
        out.requests.append(SnapshotRequest(symbol, reason, entry_id))
        self.counters["snapshot_requests"] += 1

    def _gap(
        self, entry: _Symbol, diff: DepthDiff, expected: int, ts_now: int, out: BookOutput
    ) -> None:
        self.counters["book_gaps"] += 1
        out.gaps.append(
            GapRecord(
                venue=self.venue,
                symbol=diff.symbol,
                stream="depth",
                expected=str(expected),
                received=str(diff.first_id),
                entry_id=diff.entry_id,
                ts_event=diff.ts_event,
                ts_recv=diff.ts_recv,
                ts_proc=ts_now,
            )
        )
        entry.book = None
        entry.synced = False
        entry.last_top = None
        out.tops.append(self._stale_record(diff, ts_now))
        self._request(entry, diff.symbol, f"gap: expected {expected}, got {diff.first_id}", out)
        entry.requested_at = diff.ts_event  # one request per gap (repeated only on a timeout)
        entry.buffer = [diff]  # step 1 again: buffer from the diff that revealed the gap
        self.counters["diffs_buffered"] += 1

    def _emit_top(
        self,
        entry: _Symbol,
        symbol: str,
        ts_event: int,
        ts_recv: int,
        ts_now: int,
        out: BookOutput,
    ) -> None:
        book = entry.book
        assert book is not None
        bids, asks = book.top(self.depth)
        key = (tuple(bids), tuple(asks))
        if key == entry.last_top:
            return
        entry.last_top = key
        record = BookTop(
            venue=self.venue,
            symbol=symbol,
            update_id=str(book.last_update_id),
            status="live",
            bid_price=bids[0][0] if bids else "",
            bid_qty=bids[0][1] if bids else "",
            ask_price=asks[0][0] if asks else "",
            ask_qty=asks[0][1] if asks else "",
            depth=self.depth,
            bids=format_levels(bids),
            asks=format_levels(asks),
            ts_event=ts_event,
            ts_recv=ts_recv,
            ts_proc=ts_now,
        )
        out.tops.append(record)

    def _stale_record(self, diff: DepthDiff, ts_now: int) -> BookTop:
        return BookTop(
            venue=self.venue,
            symbol=diff.symbol,
            update_id="",
            status="stale",
            bid_price="",
            bid_qty="",
            ask_price="",
            ask_qty="",
            depth=self.depth,
            bids="",
            asks="",
            ts_event=diff.ts_event,
            ts_recv=diff.ts_recv,
            ts_proc=ts_now,
        )
