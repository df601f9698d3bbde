"""Turn a venue's private user-data frames into order updates (pure, no I/O).

:func:`process_private_batch` is to ``{V}:private-raw`` what :func:`processor.core.process_batch`
is to a partition's ``raw``: ``executionReport`` events become
:class:`common.schema.OrderUpdate`; markers, request replies and other account events
(``outboundAccountPosition``, ``balanceUpdate``, ``listStatus``, ``eventStreamTerminated``...) are
passed over and counted; anything unparseable becomes a dead letter. New entries at or before the
checkpoint's last entry id are acknowledged without output; pending ones (claimed at a takeover)
are processed again and recognised by their execution ids. An ``executionReport`` whose
execution id ``I`` was already seen (the same event over a second connection, or replayed by the
venue after a reconnect) is dropped; the last :data:`SEEN_EXECUTIONS` ids are checkpointed.

Balance reports (Binance ``outboundAccountPosition``, ``balanceUpdate``) become
:class:`common.messages.Balance` entries of the venue's ``balances`` stream, in the same commit.

Each venue's parser (``parse_private`` of its :mod:`venues` package, found through
:func:`venues.registry.venue`) turns a frame into an update and its identity: Alpaca's
``trade_updates`` map to order updates the same way, identified by ``execution_id``, else by
order id, event and timestamp; ``authorization`` and ``listening`` frames count as replies.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tickpipe.common.contract import RawKind
from tickpipe.common.errors import ConfigError, DecodeError
from tickpipe.common.messages import Balance
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.processor import checkpoint
from tickpipe.processor.entries import BadEntry, DeadLetter, fold_entries
from tickpipe.venues.registry import venue

__all__ = ["PRIVATE_COUNTERS", "PrivateOutput", "VenueState", "process_private_batch"]

CHECKPOINT_VERSION = 2
#: How many recent execution ids the private lane remembers to drop repeats.
SEEN_EXECUTIONS = 4096

PRIVATE_COUNTERS = (
    "frames",
    "order_updates",
    "balances",
    "markers",
    "replies",
    "ignored",
    "dead_letters",
    "replayed",
    "reprocessed",
    "duplicate_executions",
)


@dataclass
class PrivateOutput:
    """What one private batch produced; ``acked`` lists every input entry id, in order."""

    order_updates: list[OrderUpdate] = field(default_factory=list)
    balances: list[Balance] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    frames: int = 0


class VenueState:
    """The private stream's checkpoint: last entry id and counters."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.last_entry_id = ""
        self.counters = dict.fromkeys(PRIVATE_COUNTERS, 0)
        self.executions: deque[int | str] = deque()  # recent execution ids, oldest first
        self._executions: set[int | str] = set()

    def seen(self, execution_id: int | str) -> bool:
        """Tell whether ``execution_id`` came before; remember it if not."""
        if execution_id in self._executions:
            return True
        self.executions.append(execution_id)
        self._executions.add(execution_id)
        if len(self.executions) > SEEN_EXECUTIONS:
            self._executions.discard(self.executions.popleft())
        return False

    def to_bytes(self) -> bytes:
        """Serialise the state with msgpack (the checkpoint)."""
        return checkpoint.dump(
            CHECKPOINT_VERSION,
            {
                "venue": self.venue,
                "last_entry_id": self.last_entry_id,
                "counters": self.counters,
                "executions": list(self.executions),
            },
        )

    @classmethod
    def from_bytes(cls, blob: bytes, venue: str) -> VenueState:
        """Rebuild a state saved by :meth:`to_bytes`."""

        def read(data: dict[Any, Any]) -> VenueState:
            state = cls(venue)
            state.last_entry_id = str(data["last_entry_id"])
            state.counters.update({str(k): int(v) for k, v in data["counters"].items()})
            state.executions = deque(
                i if isinstance(i, str) else int(i) for i in data["executions"]
            )
            state._executions = set(state.executions)
            return state

        return checkpoint.load(
            blob,
            read,
            what="private checkpoint",
            versions=(CHECKPOINT_VERSION,),
            owner_key="venue",
            owner=venue,
        )


def _classify(
    entry_id: str, frame: RawFrame
) -> tuple[OrderUpdate, int | str | None] | list[Balance] | str:
    """Classify a private frame: an order update and its identity, or a counter's name."""
    if frame.kind == RawKind.MARKER:
        return "markers"
    try:
        spec = venue(frame.venue)
    except ConfigError:
        raise DecodeError(f"no parser for venue {frame.venue!r}") from None
    return spec.parse_private(frame)


def process_private_batch(
    state: VenueState,
    entries: Sequence[tuple[str, RawFrame | BadEntry]],
    ts_now: int,
    *,
    pending: bool = False,
) -> PrivateOutput:
    """Fold ``entries`` (in stream order) into ``state``; return the order updates to write."""
    out = PrivateOutput()
    counters = state.counters
    folded = fold_entries(state, out, entries, _classify, pending=pending)
    for _, _, result in folded:
        if not isinstance(result, tuple):
            balances = [b for b in result if isinstance(b, Balance)]
            out.balances += [dataclasses.replace(b, ts_proc=ts_now) for b in balances]
            counters["balances"] += len(balances)
            continue
        update: OrderUpdate = result[0]
        execution_id: int | str | None = result[1]
        if execution_id is not None and state.seen(execution_id):
            counters["duplicate_executions"] += 1
            continue
        out.order_updates.append(dataclasses.replace(update, ts_proc=ts_now))
        counters["order_updates"] += 1
    counters["dead_letters"] += len(out.dead_letters)
    return out
