"""Fold a batch of stream entries: replays, counters, bad entries, classification (pure, no I/O).

Both lanes read a stream of raw entries the same way (:func:`processor.core.process_batch` for a
partition's ``raw``, :func:`processor.private.process_private_batch` for ``{V}:private-raw``).
:func:`fold_entries` does that shared part and hands each remaining entry, classified, to the
caller: every entry id is acknowledged; a :class:`BadEntry`, or a frame whose classification
raises :class:`DecodeError`, becomes a :class:`DeadLetter`; a classification that names a counter
is counted and passed over.

An entry id at or before the state's last entry id means two different things. A *new* entry
(``XREADGROUP >``) there can only come from a group rewound by hand: it was processed, and is a
replay (counted, no output). A *pending* entry there (claimed from another consumer at a
takeover, or left by this member's previous life) proves nothing: a member that lost its lease
may have taken it into its pending list without ever committing it. Those are processed again
and the lanes recognise what was already committed by its content (trade ids, quote update ids,
execution ids), so nothing is acknowledged only because of where its id falls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tickpipe.common.contract import FRAME_SEP, entry_key
from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import RawFrame

__all__ = [
    "BadEntry",
    "DeadLetter",
    "Entries",
    "EntryBatch",
    "EntryState",
    "count",
    "entry_key",
    "fold_entries",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BadEntry:
    """A stream entry that is not a valid :class:`RawFrame` (malformed or deleted)."""

    reason: str
    data: str


#: A batch read from a stream: ``(entry id, frame or bad entry)`` in stream order.
Entries = Sequence[tuple[str, RawFrame | BadEntry]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that could not be processed, with the reason and the raw data."""

    entry_id: str
    reason: str
    data: str

    def to_fields(self) -> dict[str, str]:
        """Return the stream fields: ``reason``, ``entry_id``, ``data``."""
        return {"reason": self.reason, "entry_id": self.entry_id, "data": self.data}


class EntryState(Protocol):
    """The part of a lane's checkpointed state a fold keeps up to date."""

    last_entry_id: str
    counters: dict[str, int]


class EntryBatch(Protocol):
    """The part of a batch's output a fold fills in."""

    acked: list[str]
    dead_letters: list[DeadLetter]
    frames: int


def count(counters: dict[str, int], name: str) -> None:
    """Add one to ``name``; ``family:detail`` also adds one to ``family``."""
    counters[name] = counters.get(name, 0) + 1
    family, colon, _ = name.partition(":")
    if colon:
        counters[family] = counters.get(family, 0) + 1


def fold_entries(
    state: EntryState,
    out: EntryBatch,
    entries: Iterable[tuple[str, RawFrame | BadEntry]],
    classify: Callable[[str, RawFrame], T | str],
    *,
    pending: bool = False,
) -> Iterator[tuple[str, RawFrame, T]]:
    """Yield ``(entry_id, frame, value)`` for each entry that ``classify`` turns into a value.

    Everything else is accounted for here, in stream order: entry ids go to ``out.acked`` (a
    packed entry's once, with its first frame; its other frames' ids are ``id.k``), replays to
    the ``replayed`` counter, processed entries to ``frames`` and ``state.last_entry_id`` (before
    the caller sees them), bad entries and :class:`DecodeError` to ``out.dead_letters``, and a
    counter name returned by ``classify`` to that counter (see :func:`count`). ``pending``: the
    entries were pending (see the module docstring); old ids are processed again, counted as
    ``reprocessed``. The ``dead_letters`` counter is the caller's to add to once the batch is
    done.
    """
    counters = state.counters
    last_key = entry_key(state.last_entry_id) if state.last_entry_id else (-1, -1, -1)
    old = False  # whether the current entry was processed before (all its frames were)
    for entry_id, frame in entries:
        if FRAME_SEP not in entry_id:  # an entry's first frame (a packed entry's others: id.k)
            out.acked.append(entry_id)
            # A batch holds whole entries, so a checkpoint ends with an entry's last frame:
            # the entry's own id decides for all its frames.
            key = entry_key(entry_id)
            old = key <= last_key
            if not old:
                last_key = key
        if old:
            if not pending:
                counters["replayed"] += 1
                continue
            counters["reprocessed"] = counters.get("reprocessed", 0) + 1
        else:
            state.last_entry_id = entry_id
        counters["frames"] += 1
        out.frames += 1
        if isinstance(frame, BadEntry):
            out.dead_letters.append(DeadLetter(entry_id, frame.reason, frame.data))
            continue
        try:
            value = classify(entry_id, frame)
        except DecodeError as exc:
            out.dead_letters.append(DeadLetter(entry_id, str(exc), frame.data))
            continue
        if isinstance(value, str):
            count(counters, value)
            continue
        yield entry_id, frame, value
