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
* **Control entries** (``{P}:control``): ``action`` is a :class:`ControlAction`;
  ``subscribe``/``unsubscribe`` carry ``symbols`` (comma-separated), ``snapshot`` carries
  ``symbol`` and ``reason``, ``backfill`` carries ``symbol``, ``stream``, ``first_id``,
  ``last_id`` and ``reason``.
* **Order entries** (``{V}:orders``): every entry has ``event``, an :class:`OrderEvent`. An
  ``intent`` entry is the :class:`~common.schema.OrderIntent`'s fields plus ``event``
  (:func:`order_entry`); an order's later events carry ``client_order_id signal_id symbol side
  qty ts`` (:data:`ORDER_FIELDS`) and what the event adds; free-form events (``discrepancy``,
  ``kill_switch``, ``cancel_signal``) carry ``ts`` and their own fields.
* **Entry ids**: :func:`entry_key` turns a stream entry id ``ms-seq`` into a pair that sorts
  as Redis orders the entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from tickpipe.common.schema import SCHEMA_VERSION, OrderIntent, RawFrame

__all__ = [
    "CONTROL_ACTIONS",
    "ORDER_FIELDS",
    "RAW_FIELDS",
    "RAW_PER_FRAME",
    "ControlAction",
    "MarkerEvent",
    "OrderEvent",
    "OrderRecord",
    "RawKind",
    "entry_key",
    "marker_data",
    "order_entry",
    "raw_constants",
    "subscription_entry",
]

#: The fields of a raw entry, in the order they are written.
RAW_FIELDS = ("v", "kind", "venue", "conn", "seq", "ts_recv", "channel", "data")
#: The fields of a raw entry that change with every frame (the rest: per connection's channel).
RAW_PER_FRAME = ("seq", "ts_recv", "data")


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


def entry_key(entry_id: str) -> tuple[int, int]:
    """Return a stream entry id ``ms-seq`` as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


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


def _check() -> None:
    """Fail at import if :class:`RawFrame`'s entry and :data:`RAW_FIELDS` disagree."""
    fields = RawFrame("ws", "v", "c", 1, 2, "d", "ch").to_fields()
    if tuple(fields) != RAW_FIELDS or fields["v"] != SCHEMA_VERSION:
        raise TypeError(f"RawFrame.to_fields writes {tuple(fields)}, not {RAW_FIELDS}")
    if not set(RAW_PER_FRAME) <= set(RAW_FIELDS):
        raise TypeError("RAW_PER_FRAME names a field RAW_FIELDS lacks")


_check()
