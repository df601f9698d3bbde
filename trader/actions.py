"""Name what the trader's pure core asks its shell to do (values only, no I/O).

:class:`trader.core.TraderCore` answers each input (a signal, a venue answer, an order update,
a tick) with a list of these actions; the async shell (:mod:`trader.owner`,
:mod:`trader.venue_router`, :mod:`trader.tasks`) executes them in order and feeds what Redis or
the venue answered back into the core. Tests assert on them the way websockets' tests assert on
the frames its protocol wants to send.
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
    "CancelFirst",
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
    """Record the intent (``SET NX``, its ``intent`` entry, the working set) before it leaves.

    What Redis answered goes to ``TraderCore.on_recorded``."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Send:
    """Send the order once; each answer goes to ``TraderCore.on_answer``."""

    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class Resolve:
    """Look the order up until the venue says what became of it; never send it again."""

    intent: OrderIntent
    source: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel one working order (``wait``: first wait for a request under way about it)."""

    client_order_id: str
    reason: str
    wait: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the signal: record ``rejected`` unless an intent of its id is recorded already.

    An earlier run's intent goes to ``TraderCore.on_stored`` instead, and the actions after
    this one are dropped."""

    intent: OrderIntent
    reason: str
    #: ``risk`` (a limit of this deployment) or ``order`` (the venue could not take the order:
    #: its type or its instrument filters; the signal is dead-lettered too).
    stage: str = "risk"


@dataclass(frozen=True, slots=True)
class Record:
    """Append an ``{V}:orders`` entry about an intent (``settle``: no such order exists)."""

    intent: OrderIntent
    event: str
    extra: Mapping[str, str] = field(default_factory=dict)
    settle: bool = False


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Apply the venue's answer (an order as the venue shows it) to the order and position."""

    intent: OrderIntent
    result: Mapping[str, Any]
    source: str
    event: str = "ack"


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """Append a free-form ``{V}:orders`` entry (``cancel_signal``, ``kill_switch``...)."""

    event: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Append an entry to ``{V}:trader-dead-letters``."""

    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Alarm:
    """Log an error line; the core keeps the alarm for the health record."""

    text: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Ask the venue again after ``at_least_s`` (or the shell's backoff, if longer and
    ``backoff``), at most ``cap_s``; ``failed``: the answer said nothing about the order."""

    at_least_s: float = 0.0
    cap_s: float = 60.0
    backoff: bool = True
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Await:
    """A request about this order is under way here: wait until it ends, then ask again."""

    client_order_id: str


@dataclass(frozen=True, slots=True)
class CancelFirst:
    """Cancel the order a signal replaces and wait until its end is known, then ask again."""

    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoadMarket:
    """Read the symbol's newest trades and quotes into the market view, then ask again."""

    symbol: str


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise ``error``, after the actions before this one ran."""

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
    | CancelFirst
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
