"""Name what the trader's pure core asks its shell to do (values only, no I/O).

:class:`trader.core.TraderCore` answers each input (a signal, a venue answer, an order update,
a tick) with a list of these actions; the async shell (:mod:`trader.owner`,
:mod:`trader.venue_router`, :mod:`trader.tasks`) executes them in order and feeds what Redis or
the venue answered back into the core. Tests assert on them the way websockets' tests assert on
the frames its protocol wants to send.

* :class:`RecordIntent` — record the intent (``SET NX``, its ``intent`` entry, the working set)
  before anything leaves; the shell hands what Redis answered to ``TraderCore.on_recorded``.
* :class:`Send` — send the order once (its answer goes to ``TraderCore.on_answer``).
* :class:`Resolve` — look an order up until the venue says what became of it; never resend.
* :class:`Cancel` — cancel one working order (``wait``: wait for a request under way first).
* :class:`Reject` — refuse the signal: record ``rejected`` unless an intent is already recorded
  for its client order id (an earlier run's: then ``TraderCore.on_stored`` decides).
* :class:`Record` — append an ``{V}:orders`` entry about an intent (``settle``: the order
  certainly does not exist; take it off the working set).
* :class:`RecordResult` — apply a venue's answer (an order as the venue shows it) to the order.
* :class:`RecordEvent` — append a free-form ``{V}:orders`` entry (``cancel_signal``...).
* :class:`DeadLetter` — append to ``{V}:trader-dead-letters``.
* :class:`Alarm` — an error line and an alarm in the health record.
* :class:`Retry` — ask the venue again after a delay (``at_least_s``, the shell's backoff, at most
  ``cap_s``); ``failed``: the try counts as an answer that said nothing.
* :class:`Await` — a request about this order is under way here: wait for it, then ask again.
* :class:`LoadMarket` — read the symbol's newest trades and quotes, then ask again.
* :class:`Fail` — raise ``error`` (after the actions before it ran).
* :class:`ApplyUpdate` — record an order update, move its order and position, XACK it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tickpipe.common.schema import OrderIntent

__all__ = [
    "Action",
    "Alarm",
    "ApplyUpdate",
    "Await",
    "Cancel",
    "DeadLetter",
    "Fail",
    "LoadMarket",
    "Record",
    "RecordEvent",
    "RecordIntent",
    "RecordResult",
    "Reject",
    "Resolve",
    "Retry",
    "Send",
]


@dataclass(frozen=True, slots=True)
class RecordIntent:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Send:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Resolve:
    intent: OrderIntent
    source: str


@dataclass(frozen=True, slots=True)
class Cancel:
    client_order_id: str
    reason: str
    wait: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    intent: OrderIntent
    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    intent: OrderIntent
    event: str
    extra: Mapping[str, str] = field(default_factory=dict)
    settle: bool = False


@dataclass(frozen=True, slots=True)
class RecordResult:
    intent: OrderIntent
    result: Mapping[str, Any]
    source: str
    event: str = "ack"


@dataclass(frozen=True, slots=True)
class RecordEvent:
    event: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Alarm:
    text: str


@dataclass(frozen=True, slots=True)
class Retry:
    at_least_s: float = 0.0
    cap_s: float = 60.0
    backoff: bool = True
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Await:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class LoadMarket:
    symbol: str


@dataclass(frozen=True, slots=True)
class Fail:
    error: BaseException


@dataclass(frozen=True, slots=True)
class ApplyUpdate:
    """Record an order update (as is when ``update`` is None: it did not decode) and XACK it."""

    update: Any  # common.schema.OrderUpdate | None
    record: Mapping[str, str]


Action = (
    RecordIntent
    | Send
    | Resolve
    | Cancel
    | Reject
    | Record
    | RecordResult
    | RecordEvent
    | DeadLetter
    | Alarm
    | Retry
    | Await
    | LoadMarket
    | Fail
    | ApplyUpdate
)
