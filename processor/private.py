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

Alpaca's trading stream (``{"stream":"trade_updates","data":..}``, JSON or base64 msgpack) maps
to order updates the same way (:func:`common.alpaca.parse_trade_update`); an update is identified
by its ``execution_id``, else by order id, event and timestamp. ``authorization`` and
``listening`` frames count as replies.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from common import alpaca, binance
from common.contract import RawKind
from common.errors import DecodeError
from common.schema import OrderUpdate, RawFrame
from processor.entries import BadEntry, DeadLetter, fold_entries
from processor.frames import is_reply

__all__ = ["PRIVATE_COUNTERS", "PrivateOutput", "VenueState", "process_private_batch"]

CHECKPOINT_VERSION = 2
#: How many recent execution ids the private lane remembers to drop repeats.
SEEN_EXECUTIONS = 4096

PRIVATE_COUNTERS = (
    "frames",
    "order_updates",
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
        data = {
            "v": CHECKPOINT_VERSION,
            "venue": self.venue,
            "last_entry_id": self.last_entry_id,
            "counters": self.counters,
            "executions": list(self.executions),
        }
        out: bytes = msgpack.packb(data, use_bin_type=True)
        return out

    @classmethod
    def from_bytes(cls, blob: bytes, venue: str) -> VenueState:
        """Rebuild a state saved by :meth:`to_bytes`."""
        try:
            data = msgpack.unpackb(blob, raw=False)
            if not isinstance(data, dict) or data.get("v") != CHECKPOINT_VERSION:
                raise DecodeError("private checkpoint has an unknown version")
            if data["venue"] != venue:
                raise DecodeError(f"checkpoint belongs to {data['venue']!r}, not {venue!r}")
            state = cls(venue)
            state.last_entry_id = str(data["last_entry_id"])
            state.counters.update({str(k): int(v) for k, v in data["counters"].items()})
            state.executions = deque(
                i if isinstance(i, str) else int(i) for i in data["executions"]
            )
            state._executions = set(state.executions)
        except DecodeError:
            raise
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise DecodeError(f"private checkpoint is malformed: {exc!r}") from exc
        return state


def _classify_alpaca(frame: RawFrame) -> tuple[OrderUpdate, str | None] | str:
    """Classify a trading-stream frame: ``trade_updates`` -> update and its identity."""
    payload = alpaca.decode_payload(frame.kind, frame.data)
    if not isinstance(payload, Mapping):
        raise DecodeError("Alpaca trading frame must be an object")
    stream = payload.get("stream")
    if stream in ("authorization", "listening") or payload.get("action") == "error":
        return "replies"
    if stream != "trade_updates":
        if stream is None:
            raise DecodeError("unrecognised Alpaca trading frame: no stream")
        return "ignored"
    data = payload.get("data")
    if not isinstance(data, Mapping):
        raise DecodeError("trade update data must be an object")
    update = alpaca.parse_trade_update(data, ts_recv=frame.ts_recv)
    return update, "alpaca|" + alpaca.trade_update_key(data)


def _classify(entry_id: str, frame: RawFrame) -> tuple[OrderUpdate, int | str | None] | str:
    """Classify a private frame: an order update and its identity, or a counter's name."""
    if frame.kind == RawKind.MARKER:
        return "markers"
    if frame.venue == "alpaca":
        return _classify_alpaca(frame)
    if frame.venue != "binance":
        raise DecodeError(f"no parser for venue {frame.venue!r}")
    if frame.kind != RawKind.WS:
        raise DecodeError(f"unexpected raw frame kind {frame.kind!r} on the private stream")
    _, payload = binance.unwrap(frame.data)
    if is_reply(payload):
        return "replies"
    if not isinstance(payload, Mapping) or "e" not in payload:
        raise DecodeError("unrecognised private frame: neither an event nor a reply")
    if payload["e"] != "executionReport":
        return "ignored"
    execution_id = payload.get("I")
    if execution_id is not None and (
        not isinstance(execution_id, int) or isinstance(execution_id, bool)
    ):
        raise DecodeError(f"executionReport execution id must be an integer: {execution_id!r}")
    try:
        return binance.parse_execution_report(payload, ts_recv=frame.ts_recv), execution_id
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"executionReport is invalid: {exc!r}") from exc


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
    for _, _, (update, execution_id) in folded:
        if execution_id is not None and state.seen(execution_id):
            counters["duplicate_executions"] += 1
            continue
        out.order_updates.append(dataclasses.replace(update, ts_proc=ts_now))
        counters["order_updates"] += 1
    counters["dead_letters"] += len(out.dead_letters)
    return out
