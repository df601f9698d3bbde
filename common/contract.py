"""Define once the entries the stages exchange through Redis: raw, control and order entries.

Producers build these entries and consumers read them through the names here, so a field, a
kind or an event is spelled in one place (pure: no I/O).

* **Raw entries** (``{P}:raw``, ``{V}:private-raw``): :data:`RAW_FIELDS` in this order,
  ``v kind venue conn seq ts_recv channel data`` (:meth:`common.schema.RawFrame.to_fields`).
  :data:`RAW_PER_FRAME` are the fields that change with every frame; the others stay the same
  for a connection's channel, which the ingestor's fast encoders
  (:func:`ingestor.writer.encode_raw_xadd`, :data:`ingestor.writer.APPEND_SCRIPT`) and the
  processor's fast decoder (:func:`processor.wire.decode_flat_entries`) are built from.
  ``kind`` is a :class:`RawKind`; a ``marker`` entry's ``data`` is a JSON object whose ``event``
  is a :class:`MarkerEvent` (:func:`marker_data`).
* **Packed raw entries**: consecutive WebSocket frames (``ws``, ``ws-binary``) of one
  connection's channel that the ingestor writes in one go may share an entry (at most
  :data:`RAW_PACK_MAX` frames), which saves Redis one entry, one read and one acknowledgement
  per frame. Such an entry holds the first frame's fields as above, then ``frames`` (how many
  frames it holds, n >= 2), then ``seq.k ts_recv.k data.k`` for each further frame k = 1..n-1.
  Frame k's id is the entry id with ``.k`` appended (``1700000000000-3.2``; the first frame's id
  is the entry's own). Read raw entries through :func:`raw_entry_frames` (one ``(id, fields)``
  per frame, each with exactly the fields of a one-frame entry), never by taking ``data`` alone.
* **Control entries** (``{P}:control``): ``action`` is a :class:`ControlAction`;
  ``subscribe``/``unsubscribe`` carry ``symbols`` (comma-separated), ``snapshot`` carries
  ``symbol`` and ``reason``, ``backfill`` carries ``symbol``, ``stream``, ``first_id``,
  ``last_id`` and ``reason``.
* **Order entries** (``{V}:orders``): every entry has ``event``, an :class:`OrderEvent`. An
  ``intent`` entry is the :class:`~common.schema.OrderIntent`'s fields plus ``event``
  (:func:`order_entry`); an order's later events carry ``client_order_id signal_id symbol side
  qty ts`` (:data:`ORDER_FIELDS`) and what the event adds; free-form events (``discrepancy``,
  ``kill_switch``, ``cancel_signal``) carry ``ts`` and their own fields.
* **Entry ids**: :func:`entry_key` turns a stream entry id ``ms-seq`` (or a packed frame's
  ``ms-seq.k``) into a tuple that sorts as Redis orders the entries and their frames;
  :func:`base_entry_id` gives the entry id of a frame id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from tickpipe.common.schema import SCHEMA_VERSION, OrderIntent, RawFrame

__all__ = [
    "CONTROL_ACTIONS",
    "FRAME_SEP",
    "ORDER_FIELDS",
    "RAW_FIELDS",
    "RAW_FRAMES",
    "RAW_PACK_MAX",
    "RAW_PER_FRAME",
    "ControlAction",
    "MarkerEvent",
    "OrderEvent",
    "OrderRecord",
    "RawKind",
    "base_entry_id",
    "entry_key",
    "frame_id",
    "is_entry_id",
    "marker_data",
    "order_entry",
    "packed_field",
    "raw_constants",
    "raw_entry_frames",
    "raw_frames_of",
    "subscription_entry",
]

#: The fields of a raw entry, in the order they are written.
RAW_FIELDS = ("v", "kind", "venue", "conn", "seq", "ts_recv", "channel", "data")
#: The fields of a raw entry that change with every frame (the rest: per connection's channel).
RAW_PER_FRAME = ("seq", "ts_recv", "data")
#: The field of a packed raw entry that says how many frames it holds (absent: one).
RAW_FRAMES = "frames"
#: The most frames one raw entry holds.
RAW_PACK_MAX = 64
#: What joins an entry id and a frame's index (``ms-seq.k``), and a field name and a frame's
#: index in a packed entry (``data.k``).
FRAME_SEP = "."


class RawKind(StrEnum):
    """What a raw entry holds."""

    WS = "ws"  #: a WebSocket text frame as received
    WS_BINARY = "ws-binary"  #: a binary WebSocket frame (Alpaca msgpack), base64 in ``data``
    REST = "rest"  #: a REST response (depth snapshot, trade backfill page)
    MARKER = "marker"  #: an event the ingestor recorded (:class:`MarkerEvent`)


class MarkerEvent(StrEnum):
    """The ``event`` of a marker entry's JSON ``data``."""

    CONNECT = "connect"
    DISCONNECT = "disconnect"
    ROTATE = "rotate"
    STALE = "stale"
    GAP = "gap"
    BACKFILL_DONE = "backfill_done"
    REST_ERROR = "rest_error"
    REDIS_LOST = "redis_lost"
    OVERSIZED_FRAME = "oversized_frame"
    SUBSCRIPTION_REFUSED = "subscription_refused"


class ControlAction(StrEnum):
    """The ``action`` of a control entry."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    SNAPSHOT = "snapshot"
    BACKFILL = "backfill"


#: Every control action, as plain strings (the ingestor checks requests against it).
CONTROL_ACTIONS: tuple[str, ...] = tuple(a.value for a in ControlAction)


class OrderEvent(StrEnum):
    """The ``event`` of a ``{V}:orders`` entry."""

    INTENT = "intent"
    ACK = "ack"
    UPDATE = "update"
    REJECTED = "rejected"
    NOT_FOUND = "not_found"
    PLACED_AGAIN = "placed_again"  # the venue never got the decision: it is placed now, once
    UNKNOWN = "unknown"
    ADOPTED = "adopted"
    RECONCILED = "reconciled"
    CANCELED = "canceled"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REJECTED = "cancel_rejected"
    CANCEL_SIGNAL = "cancel_signal"
    DISCREPANCY = "discrepancy"
    KILL_SWITCH = "kill_switch"
    INSTRUMENTS = "instruments"  # a symbol's instrument filters as the trader loaded them


#: The fields every order event about one intent carries (after ``event``), in order.
ORDER_FIELDS = ("client_order_id", "signal_id", "symbol", "side", "qty", "ts")


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One ``{V}:orders`` entry about an order after its intent: ``event``, the order's
    :data:`ORDER_FIELDS`, then what the event adds (``reason``, ``status``, ...)."""

    event: OrderEvent
    client_order_id: str
    signal_id: str
    symbol: str
    side: str
    qty: str
    ts: int
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def about(
        cls, intent: OrderIntent, event: str, ts: int, extra: Mapping[str, str]
    ) -> OrderRecord:
        """Return the ``event`` entry about ``intent`` at ``ts`` (ns); ValueError if unknown."""
        return cls(
            OrderEvent(event),
            intent.client_order_id,
            intent.signal_id,
            intent.symbol,
            intent.side,
            intent.qty,
            ts,
            extra,
        )

    def to_fields(self) -> dict[str, str]:
        """Return the entry's fields in order: ``event``, :data:`ORDER_FIELDS`, the extras."""
        return {
            "event": self.event.value,
            "client_order_id": self.client_order_id,
            "signal_id": self.signal_id,
            "symbol": self.symbol,
            "side": self.side,
            "qty": self.qty,
            "ts": str(self.ts),
            **self.extra,
        }


def entry_key(entry_id: str) -> tuple[int, int, int]:
    """Return a stream entry id ``ms-seq`` (or a packed frame's ``ms-seq.k``) as a comparable
    triple ``(ms, seq, k)``, ``k`` 0 for an entry's own id."""
    ms, _, rest = entry_id.partition("-")
    if FRAME_SEP not in rest:
        return int(ms), int(rest or 0), 0
    seq, _, k = rest.partition(FRAME_SEP)
    return int(ms), int(seq or 0), int(k or 0)


def frame_id(entry_id: str, k: int) -> str:
    """Return the id of frame ``k`` (0 for the first) of raw entry ``entry_id``."""
    return f"{entry_id}{FRAME_SEP}{k}" if k else entry_id


def base_entry_id(frame: str) -> str:
    """Return the id of the stream entry that holds the frame with id ``frame``."""
    return frame.partition(FRAME_SEP)[0]


def is_entry_id(frame: str) -> bool:
    """Tell whether a frame id is its entry's own id (the entry's first frame)."""
    return FRAME_SEP not in frame


def packed_field(name: str, k: int) -> str:
    """Return the name of field ``name`` of frame ``k`` (>= 1) in a packed raw entry."""
    return f"{name}{FRAME_SEP}{k}"


#: The names of frame k's fields in a packed entry, by k (built as needed).
_PACKED_NAMES: list[tuple[str, str, str]] = [("seq", "ts_recv", "data")]


def _packed_names(k: int) -> tuple[str, str, str]:
    while len(_PACKED_NAMES) <= k:
        n = len(_PACKED_NAMES)
        seq, ts_recv, data = (packed_field(name, n) for name in RAW_PER_FRAME)
        _PACKED_NAMES.append((seq, ts_recv, data))
    return _PACKED_NAMES[k]


def raw_entry_frames(
    entry_id: str | bytes, fields: Mapping[Any, Any]
) -> list[tuple[str, dict[Any, Any]]]:
    """Return one ``(frame id, fields)`` per frame of a raw entry, in order.

    A one-frame entry comes back as it is; each frame of a packed entry comes back with exactly
    the fields of a one-frame entry (the shared ones and its own ``seq ts_recv data``), keys of
    the same type as ``fields``' (redis-py answers bytes). A packed entry whose frames are not
    all there comes back whole, as one item: :meth:`RawFrame.from_fields` refuses it (a dead
    letter), so no frame of it is lost silently.
    """
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    as_bytes = bool(fields) and isinstance(next(iter(fields)), bytes)
    key = RAW_FRAMES.encode() if as_bytes else RAW_FRAMES
    count = fields.get(key) if fields else None
    if count is None:
        return [(entry_id, dict(fields) if fields is not None else {})]
    try:
        n = int(count)
    except ValueError:
        n = 0
    shared = {
        k: v
        for k, v in fields.items()
        if (k.decode() if as_bytes else k) in RAW_FIELDS
        and (k.decode() if as_bytes else k) not in RAW_PER_FRAME
    }
    out: list[tuple[str, dict[Any, Any]]] = []
    for k in range(max(n, 1)):
        names = _packed_names(k)
        own = {}
        for plain, name in zip(RAW_PER_FRAME, names, strict=True):
            at = name.encode() if as_bytes else name
            if at in fields:
                own[plain.encode() if as_bytes else plain] = fields[at]
        if len(own) < len(RAW_PER_FRAME) or n < 2:  # malformed: hand it on whole, as one frame
            return [(entry_id, dict(fields))]
        out.append((frame_id(entry_id, k), {**shared, **own}))
    return out


def raw_constants(frame: RawFrame) -> dict[str, str]:
    """Return the fields of ``frame``'s entry that stay the same for its connection's channel."""
    fields = frame.to_fields()
    return {name: fields[name] for name in RAW_FIELDS if name not in RAW_PER_FRAME}


def subscription_entry(action: str, symbols: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Return a ``subscribe``/``unsubscribe`` control entry; raise ValueError for another action."""
    if action not in (ControlAction.SUBSCRIBE, ControlAction.UNSUBSCRIBE):
        raise ValueError(f"action must be subscribe or unsubscribe, got {action!r}")
    return {"action": str(action), "symbols": ",".join(symbols)}


def marker_data(event: MarkerEvent, **fields: Any) -> str:
    """Return a marker entry's ``data``: ``{"event": event, **fields}`` as compact JSON."""
    return orjson.dumps({"event": event.value, **fields}).decode()


def order_entry(intent: OrderIntent) -> dict[str, str]:
    """Return the ``intent`` entry of ``{V}:orders`` for ``intent`` (its fields plus ``event``)."""
    return {**intent.to_fields(), "event": OrderEvent.INTENT.value}


def raw_frames_of(
    entries: Iterable[tuple[Any, Mapping[Any, Any] | None]] | None,
) -> list[tuple[str, dict[Any, Any]]]:
    """Return one ``(frame id, fields)`` per frame of raw stream entries, in stream order."""
    return [
        one
        for entry_id, fields in entries or ()
        for one in raw_entry_frames(entry_id, fields or {})
    ]


def _check() -> None:
    """Fail at import if :class:`RawFrame`'s entry and :data:`RAW_FIELDS` disagree."""
    fields = RawFrame("ws", "v", "c", 1, 2, "d", "ch").to_fields()
    if tuple(fields) != RAW_FIELDS or fields["v"] != SCHEMA_VERSION:
        raise TypeError(f"RawFrame.to_fields writes {tuple(fields)}, not {RAW_FIELDS}")
    if not set(RAW_PER_FRAME) <= set(RAW_FIELDS):
        raise TypeError("RAW_PER_FRAME names a field RAW_FIELDS lacks")


_check()
