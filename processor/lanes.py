"""Adapt the pure cores to the shell: one lane per input stream the processor owns (no I/O).

A lane knows its input stream, lease key and checkpoint key, loads its state from a checkpoint
blob, and turns decoded stream entries into a :class:`Commit`: the output entries to XADD, the
checkpoint to SET and the ids to XACK, all written by the shell in one ``MULTI``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from common.errors import DecodeError
from common.names import Partition
from common.schema import RawFrame, decode_fields
from common.settings import Settings
from processor.core import BadEntry, PartitionState, build_strategies, process_batch
from processor.private import VenueState, process_private_batch

__all__ = ["Commit", "Lane", "PartitionLane", "PrivateLane", "decode_entries", "private_lease_key"]


@dataclass
class Commit:
    """What one batch writes: outputs ``(stream, fields)``, checkpoint, acks, stats."""

    outputs: list[tuple[str, dict[str, str]]]
    checkpoint: bytes
    acked: list[str]
    frames: int
    stats: dict[str, int] = field(default_factory=dict)


class Lane(Protocol):
    """One input stream owned through a lease and resumed from a checkpoint."""

    name: str
    stream: str
    lease_key: str
    checkpoint_key: str
    dead_letter_key: str

    def load(self, blob: bytes | None) -> None: ...

    def process(
        self, entries: Sequence[tuple[str, RawFrame | BadEntry]], ts_now: int
    ) -> Commit: ...


def private_lease_key(settings: Settings, venue: str) -> str:
    """Return the private stream's lease key (built here until common.names has one)."""
    return settings.keys.venue_lease(venue)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entries(
    entries: Sequence[tuple[Any, Mapping[Any, Any] | None]],
) -> list[tuple[str, RawFrame | BadEntry]]:
    """Turn redis-py stream entries into ``(entry id, RawFrame or BadEntry)`` pairs."""
    out: list[tuple[str, RawFrame | BadEntry]] = []
    for raw_id, fields in entries:
        entry_id = _text(raw_id)
        if not fields:
            out.append((entry_id, BadEntry("entry was deleted before it was processed", "")))
            continue
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
    """A partition's ``raw`` stream -> trades, bars, signals, dead letters."""

    def __init__(self, settings: Settings, partition: Partition) -> None:
        keys = settings.keys
        self.settings = settings
        self.partition = partition
        self.name = str(partition)
        self.stream = keys.raw(partition)
        self.lease_key = keys.lease(partition)
        self.checkpoint_key = keys.checkpoint(partition)
        self.dead_letter_key = keys.dead_letters(partition)
        self.trades_key = keys.trades(partition)
        self.signals_key = keys.signals(partition)
        self.state = self._fresh()

    def _fresh(self) -> PartitionState:
        return PartitionState(self.name, self.partition.venue, build_strategies(self.settings))

    def load(self, blob: bytes | None) -> None:
        if blob is None:
            self.state = self._fresh()
            return
        self.state = PartitionState.from_bytes(
            blob, self.name, self.partition.venue, build_strategies(self.settings)
        )

    def process(self, entries: Sequence[tuple[str, RawFrame | BadEntry]], ts_now: int) -> Commit:
        out = process_batch(self.state, entries, ts_now)
        keys = self.settings.keys
        outputs: list[tuple[str, dict[str, str]]] = []
        outputs += [(self.trades_key, t.to_fields()) for t in out.trades]
        outputs += [(keys.bars(self.partition, b.interval), b.to_fields()) for b in out.bars]
        outputs += [(self.signals_key, s.to_fields()) for s in out.signals]
        outputs += [(self.dead_letter_key, d.to_fields()) for d in out.dead_letters]
        return Commit(
            outputs=outputs,
            checkpoint=self.state.to_bytes(),
            acked=out.acked,
            frames=out.frames,
            stats={
                "trades": len(out.trades),
                "bars": len(out.bars),
                "signals": len(out.signals),
                "dead_letters": len(out.dead_letters),
            },
        )


class PrivateLane:
    """A venue's ``private-raw`` stream -> order updates, dead letters."""

    def __init__(self, settings: Settings, venue: str) -> None:
        keys = settings.keys
        self.venue = venue
        self.name = f"{venue}:private"
        self.stream = keys.private_raw(venue)
        self.lease_key = private_lease_key(settings, venue)
        self.checkpoint_key = keys.venue_checkpoint(venue)
        self.dead_letter_key = keys.venue_dead_letters(venue)
        self.updates_key = keys.order_updates(venue)
        self.state = VenueState(venue)

    def load(self, blob: bytes | None) -> None:
        self.state = (
            VenueState(self.venue) if blob is None else VenueState.from_bytes(blob, self.venue)
        )

    def process(self, entries: Sequence[tuple[str, RawFrame | BadEntry]], ts_now: int) -> Commit:
        out = process_private_batch(self.state, entries, ts_now)
        outputs = [(self.updates_key, u.to_fields()) for u in out.order_updates]
        outputs += [(self.dead_letter_key, d.to_fields()) for d in out.dead_letters]
        return Commit(
            outputs=outputs,
            checkpoint=self.state.to_bytes(),
            acked=out.acked,
            frames=out.frames,
            stats={"order_updates": len(out.order_updates), "dead_letters": len(out.dead_letters)},
        )
