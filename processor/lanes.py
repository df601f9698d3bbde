"""Adapt the pure cores to the shell: one lane per input stream the processor owns (no I/O).

A lane knows its input stream, lease key and checkpoint key, loads its state from a checkpoint
blob, and turns decoded stream entries into a :class:`Commit`: the output entries to XADD, the
checkpoint to SET and the ids to XACK, all written by the shell in one ``MULTI``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from tickpipe.common.contract import raw_entry_frames
from tickpipe.common.errors import DecodeError
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.names import (
    ARCHIVED_KINDS,
    BAR_INTERVALS,
    GROUP_ARCHIVE,
    GROUP_PROCESSOR,
    Partition,
)
from tickpipe.common.schema import OrderUpdate, RawFrame, decode_fields, text_of
from tickpipe.common.settings import Settings
from tickpipe.processor.core import BadEntry, PartitionState, process_batch
from tickpipe.processor.entries import Entries
from tickpipe.processor.own_orders import later_id, order_event
from tickpipe.processor.private import VenueState, process_private_batch
from tickpipe.processor.strategies import INSTRUMENTS, ORDERS

__all__ = ["Commit", "Lane", "PartitionLane", "PrivateLane", "decode_entries", "private_lease_key"]


#: One kind of output of a batch: its name in the stats, its stream (or the stream of each
#: record), and its records.
OutputKind = tuple[str, str | Callable[[Any], str], Sequence[Any]]


@dataclass
class Commit:
    """What one batch writes: outputs ``(stream, fields)``, checkpoint, acks, stats.

    ``gauges`` are the lane's levels after the batch (``open_gaps``); ``warnings`` the lines the
    shell logs once the commit is confirmed.
    """

    outputs: list[tuple[str, dict[str, str]]]
    checkpoint: bytes
    acked: list[str]
    frames: int
    stats: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        kinds: Sequence[OutputKind],
        *,
        checkpoint: bytes,
        acked: list[str],
        frames: int,
        **levels: Any,
    ) -> Commit:
        """Write each kind's records to its stream, in the order given, and count them."""
        outputs: list[tuple[str, dict[str, str]]] = []
        stats: dict[str, int] = {}
        for name, stream, records in kinds:
            if isinstance(stream, str):
                outputs += [(stream, r.to_fields()) for r in records]
            else:
                outputs += [(stream(r), r.to_fields()) for r in records]
            stats[name] = len(records)
        return cls(outputs, checkpoint, acked, frames, stats, **levels)


def _archived(
    settings: Settings, retained: list[tuple[str, str, tuple[str, ...]]]
) -> list[tuple[str, str, tuple[str, ...]]]:
    """With the archive on, its group must read an archived stream before it is trimmed."""
    if not settings.archive:
        return retained
    return [
        (kind, key, (*groups, GROUP_ARCHIVE) if kind in ARCHIVED_KINDS else groups)
        for kind, key, groups in retained
    ]


class Lane(Protocol):
    """One input stream owned through a lease and resumed from a checkpoint."""

    name: str
    stream: str
    lease_key: str
    #: This member's own key that aborts its reads once the lease is not its own.
    fence_key: str
    checkpoint_key: str
    dead_letter_key: str
    #: Streams the lane's owner trims: ``(kind, key, groups that must exist first)``.
    retained: list[tuple[str, str, tuple[str, ...]]]

    def load(self, blob: bytes | None) -> None: ...

    def process(self, entries: Entries, ts_now: int, *, pending: bool = False) -> Commit: ...


def private_lease_key(settings: Settings, venue: str) -> str:
    """Return the private stream's lease key (built here until common.names has one)."""
    return settings.keys.venue_lease(venue)


def decode_entries(
    entries: Sequence[tuple[Any, Mapping[Any, Any] | None]],
) -> list[tuple[str, RawFrame | BadEntry]]:
    """Turn redis-py stream entries into ``(frame id, RawFrame or BadEntry)`` pairs, one per
    frame (a packed entry holds several: :func:`common.contract.raw_entry_frames`)."""
    out: list[tuple[str, RawFrame | BadEntry]] = []
    for raw_id, whole in entries:
        if not whole:
            out.append((text_of(raw_id), BadEntry("entry was deleted before it was processed", "")))
            continue
        for entry_id, fields in raw_entry_frames(text_of(raw_id), whole):
            try:
                out.append((entry_id, RawFrame.from_fields(fields)))
            except DecodeError as exc:
                try:
                    data = orjson.dumps(decode_fields(fields)).decode()
                except (UnicodeDecodeError, TypeError):
                    data = repr(fields)
                out.append((entry_id, BadEntry(str(exc), data)))
    return out


class PartitionLane:
    """A partition's ``raw`` stream -> trades, quotes, books, bars, signals, gaps, dead letters.

    Gap records and their resolutions go to ``gaps``; snapshot and backfill requests to the
    partition's ``control`` stream, in the same atomic commit.
    """

    def __init__(self, settings: Settings, partition: Partition) -> None:
        keys = settings.keys
        self.settings = settings
        self.partition = partition
        self.name = str(partition)
        self.stream = keys.raw(partition)
        self.lease_key = keys.lease(partition)
        self.fence_key = keys.read_fence(partition, settings.instance)
        self.checkpoint_key = keys.checkpoint(partition)
        self.dead_letter_key = keys.dead_letters(partition)
        self.trades_key = keys.trades(partition)
        self.signals_key = keys.signals(partition)
        self.quotes_key = keys.quotes(partition)
        self.book_key = keys.book(partition)
        self.gaps_key = keys.gaps(partition)
        self.control_key = keys.control(partition)
        self.venue_bars_key = keys.venue_bars(partition)
        self.tickers_key = keys.tickers(partition)
        self.partial_depth_key = keys.partial_depth(partition)
        self.corrections_key = keys.trade_corrections(partition)
        self.status_key = keys.venue_status(partition)
        #: The venue's order updates, read for strategies that follow their own orders.
        self.updates_key = keys.order_updates(partition.venue)
        #: The trader's order events, read for its refusals and the instrument filters.
        self.orders_key = keys.orders(partition.venue)
        #: Order updates and events read since the last batch, handed over with the next one.
        self.updates: list[tuple[str, OrderUpdate]] = []
        self.order_events: list[tuple[str, OrderUpdate | InstrumentFilters]] = []
        #: id of the last ``orders`` entry read (most are of no use here), "" = none this term.
        self.order_events_read = ""
        self.retained = [
            ("raw", self.stream, (GROUP_PROCESSOR,)),
            ("trades", self.trades_key, ()),
            ("quotes", self.quotes_key, ()),
            ("book", self.book_key, ()),
            *(("bars", keys.bars(partition, i), ()) for i in BAR_INTERVALS),
            ("signals", self.signals_key, ()),
            ("gaps", self.gaps_key, ()),
            ("control", self.control_key, ()),
            ("venue-bars", self.venue_bars_key, ()),
            ("tickers", self.tickers_key, ()),
            ("partial-depth", self.partial_depth_key, ()),
            ("trade-corrections", self.corrections_key, ()),
            ("venue-status", self.status_key, ()),
            ("dead-letters", self.dead_letter_key, ()),
        ]
        self.retained = _archived(settings, self.retained)
        self.state = self._fresh()

    def _fresh(self) -> PartitionState:
        return PartitionState.from_settings(self.settings, self.name, self.partition.venue)

    def load(self, blob: bytes | None) -> None:
        """Restore the checkpoint (or start afresh); books start missing either way."""
        self.updates, self.order_events, self.order_events_read = [], [], ""
        self.state = PartitionState.from_settings(
            self.settings, self.name, self.partition.venue, blob
        )

    def updates_from(self) -> str | None:
        """The id after which to read ``order-updates``; ``None``: no strategy follows orders."""
        if not self.state.routes[ORDERS]:
            return None
        return self.state.own.last_update_id or "0"

    def order_events_from(self) -> str | None:
        """The id after which to read ``orders`` (``None``: no strategy follows it)."""
        if not (self.state.routes[ORDERS] or self.state.routes[INSTRUMENTS]):
            return None
        return later_id(self.state.own.last_order_event_id, self.order_events_read) or "0"

    def offer_order_events(self, entries: Sequence[tuple[Any, Mapping[Any, Any]]]) -> None:
        """Keep the trader's refusals and instrument filters among ``orders`` entries read."""
        for raw_id, fields in entries:
            event = order_event(decode_fields(fields), self.partition.venue)
            if event is not None:
                self.order_events.append((text_of(raw_id), event))
        if entries:  # the entries in between are read past too: remember where
            self.order_events_read = text_of(entries[-1][0])

    def offer_updates(self, entries: Sequence[tuple[Any, Mapping[Any, Any]]]) -> list[str]:
        """Decode the ``order-updates`` entries read; return a warning per unreadable one."""
        problems: list[str] = []
        for raw_id, fields in entries:
            try:
                self.updates.append((text_of(raw_id), OrderUpdate.from_fields(fields)))
            except DecodeError as exc:
                problems.append(f"order update {text_of(raw_id)} unreadable, passed over: {exc}")
        return problems

    def process(self, entries: Entries, ts_now: int, *, pending: bool = False) -> Commit:
        updates, self.updates = self.updates, []
        order_events, self.order_events = self.order_events, []
        out = process_batch(
            self.state, entries, ts_now, pending=pending, updates=updates, order_events=order_events
        )
        own = self.state.own  # every event read so far was handed over: skip the rest too
        own.last_order_event_id = later_id(own.last_order_event_id, self.order_events_read)
        keys, partition = self.settings.keys, self.partition
        return Commit.of(
            [
                ("trades", self.trades_key, out.trades),
                ("bars", lambda b: keys.bars(partition, b.interval), out.bars),
                ("signals", self.signals_key, out.signals),
                ("quotes", self.quotes_key, out.quotes),
                ("book_tops", self.book_key, out.book_tops),
                ("gaps", self.gaps_key, out.gaps),
                ("gap_resolutions", self.gaps_key, out.resolutions),
                ("snapshot_requests", self.control_key, out.snapshot_requests),
                ("backfill_requests", self.control_key, out.backfill_requests),
                ("venue_bars", self.venue_bars_key, out.venue_bars),
                ("corrections", self.corrections_key, out.corrections),
                ("statuses", self.status_key, out.statuses),
                ("tickers", self.tickers_key, out.tickers),
                ("partial_depths", self.partial_depth_key, out.partial_depths),
                ("dead_letters", self.dead_letter_key, out.dead_letters),
            ],
            checkpoint=self.state.to_bytes(),
            acked=out.acked,
            frames=out.frames,
            gauges={
                "open_gaps": len(self.state.holes.open),
                # since the partition began (checkpointed): a strategy's errors and disabling
                "strategy_errors": self.state.counters["strategy_errors"],
                "strategies_disabled": self.state.counters["strategies_disabled"],
            },
            warnings=out.warnings,
        )


class PrivateLane:
    """A venue's ``private-raw`` stream -> order updates, dead letters."""

    def __init__(self, settings: Settings, venue: str) -> None:
        keys = settings.keys
        self.venue = venue
        self.name = f"{venue}:private"
        self.stream = keys.private_raw(venue)
        self.lease_key = private_lease_key(settings, venue)
        self.fence_key = keys.venue_read_fence(venue, settings.instance)
        self.checkpoint_key = keys.venue_checkpoint(venue)
        self.dead_letter_key = keys.venue_dead_letters(venue)
        self.updates_key = keys.order_updates(venue)
        self.balances_key = keys.balances(venue)
        self.retained = [
            ("private-raw", self.stream, (GROUP_PROCESSOR,)),
            ("order-updates", self.updates_key, ()),
            ("balances", self.balances_key, ()),
            ("dead-letters", self.dead_letter_key, ()),
        ]
        self.retained = _archived(settings, self.retained)
        self.state = VenueState(venue)

    def load(self, blob: bytes | None) -> None:
        self.state = (
            VenueState(self.venue) if blob is None else VenueState.from_bytes(blob, self.venue)
        )

    def process(self, entries: Entries, ts_now: int, *, pending: bool = False) -> Commit:
        out = process_private_batch(self.state, entries, ts_now, pending=pending)
        return Commit.of(
            [
                ("order_updates", self.updates_key, out.order_updates),
                ("balances", self.balances_key, out.balances),
                ("dead_letters", self.dead_letter_key, out.dead_letters),
            ],
            checkpoint=self.state.to_bytes(),
            acked=out.acked,
            frames=out.frames,
        )
