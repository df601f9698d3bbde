"""Plan which streams each connection carries and pace control messages (pure: no I/O, no clock).

A partition wants a set of ``(symbol, channel)`` streams. :class:`PartitionSubs` spreads them over
connection slots, at most :data:`MAX_STREAMS_PER_CONN` each, keeping a stream on its slot for as
long as it is wanted (a change never reshuffles live connections). :class:`TokenBucket` keeps
outgoing control messages under the venue's 5 messages/s per connection. :func:`parse_control`
reads an entry of the partition's control stream (see :mod:`ingestor.control` for the actions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tickpipe.common.contract import CONTROL_ACTIONS, ControlAction
from tickpipe.common.errors import DecodeError
from tickpipe.common.schema import decode_fields

__all__ = [
    "BACKFILL_STREAMS",
    "MAX_STREAMS_PER_CONN",
    "ControlRequest",
    "PartitionSubs",
    "TokenBucket",
    "chunked",
    "parse_control",
    "parse_symbols",
    "streams_for",
]

#: Binance's cap of streams on one connection.
MAX_STREAMS_PER_CONN = 1024
#: The id spaces a ``backfill`` entry may name (``stream``).
BACKFILL_STREAMS = ("trades", "aggTrades")


def streams_for(
    symbols: Iterable[str], channels: Iterable[str], name: Callable[[str, str], str]
) -> list[str]:
    """Return every stream of ``symbols`` and ``channels`` (named by the venue's ``name``),
    symbol-major, without repeats."""
    chans = list(channels)
    return list(dict.fromkeys(name(s, c) for s in symbols for c in chans))


def chunked(items: Sequence[str], size: int) -> list[list[str]]:
    """Split ``items`` into lists of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(slots=True)
class PartitionSubs:
    """The wanted streams of one partition, spread over connection slots within the cap."""

    cap: int = MAX_STREAMS_PER_CONN
    slots: list[dict[str, None]] = field(default_factory=list)

    def where(self, stream: str) -> int | None:
        """Return the slot carrying ``stream``, if any."""
        for n, slot in enumerate(self.slots):
            if stream in slot:
                return n
        return None

    def add(self, streams: Iterable[str]) -> dict[int, list[str]]:
        """Place new streams in the first slots with room (opening slots as needed).

        Returns, per slot, the streams added to it; streams already placed are skipped.
        """
        added: dict[int, list[str]] = {}
        for stream in dict.fromkeys(streams):
            if self.where(stream) is not None:
                continue
            n = next((i for i, s in enumerate(self.slots) if len(s) < self.cap), None)
            if n is None:
                self.slots.append({})
                n = len(self.slots) - 1
            self.slots[n][stream] = None
            added.setdefault(n, []).append(stream)
        return added

    def remove(self, streams: Iterable[str]) -> dict[int, list[str]]:
        """Drop streams from their slots; return, per slot, the streams removed from it."""
        removed: dict[int, list[str]] = {}
        for stream in dict.fromkeys(streams):
            n = self.where(stream)
            if n is not None:
                del self.slots[n][stream]
                removed.setdefault(n, []).append(stream)
        return removed

    def streams(self, slot: int) -> list[str]:
        """Return the streams of ``slot`` in the order they were added."""
        return list(self.slots[slot]) if slot < len(self.slots) else []


@dataclass(slots=True)
class TokenBucket:
    """Allow ``rate_per_s`` sends per second with bursts of ``capacity`` (time in ns, passed in).

    The defaults (3.5/s, burst 1) keep any one-second window at 4 messages or fewer, leaving room
    under Binance's 5/s for the keepalive pings that count against the same limit.
    """

    rate_per_s: float = 3.5
    capacity: float = 1.0
    tokens: float = 1.0
    updated_ns: int | None = None

    def wait_ns(self, now_ns: int) -> int:
        """Take a token if one is available (return 0), else return how long to wait for one."""
        if self.updated_ns is not None:
            elapsed = max(0, now_ns - self.updated_ns) / 1e9
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
        self.updated_ns = now_ns
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        return int((1.0 - self.tokens) / self.rate_per_s * 1e9) + 1


def parse_symbols(text: str, *, pairs: bool = False) -> list[str]:
    """Split ``"A,B"`` into upper-case symbols; raise :class:`DecodeError` for anything else.

    ``pairs`` also allows Alpaca's ``BTC/USD`` pairs and share classes such as ``BRK.B``.
    """
    out = [s.strip().upper() for s in text.split(",") if s.strip()]
    for s in out:
        bare = s.replace("/", "").replace(".", "") if pairs else s
        if not bare.isalnum() or len(s) > 20:
            raise DecodeError(f"{s!r} is not a symbol")
    if not out:
        raise DecodeError("no symbol given")
    return out


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """One decoded control entry; the ids, ``stream`` and ``entry_id`` belong to a backfill."""

    action: str
    symbols: tuple[str, ...]
    reason: str = ""
    first_id: int = 0
    last_id: int = 0
    stream: str = ""
    entry_id: str = ""


def parse_control(fields: Mapping[Any, Any], *, pairs: bool = False) -> ControlRequest:
    """Decode a control entry: ``action`` plus ``symbols`` (``"A,B"``) or ``symbol``.

    A ``backfill`` names one ``symbol``, the inclusive trade ids ``first_id`` and ``last_id``
    and the id space ``stream`` (``trades`` or ``aggTrades``); ``entry_id`` (the raw entry that
    showed the hole) is optional. Raises :class:`DecodeError` naming the bad field.
    """
    data = decode_fields(fields)
    action = data.get("action", "")
    if action not in CONTROL_ACTIONS:
        raise DecodeError(f"unknown control action {action!r}; known: {CONTROL_ACTIONS}")
    text = data.get("symbols") or data.get("symbol") or ""
    symbols = tuple(parse_symbols(text, pairs=pairs))
    reason = data.get("reason", "")
    if action != ControlAction.BACKFILL:
        return ControlRequest(action, symbols, reason)
    if len(symbols) != 1:
        raise DecodeError(f"a backfill names one symbol, got {text!r}")
    first, last = _trade_id(data, "first_id"), _trade_id(data, "last_id")
    if first > last:
        raise DecodeError(f"backfill first_id {first} is after last_id {last}")
    stream = data.get("stream", "")
    if stream not in BACKFILL_STREAMS:
        raise DecodeError(f"backfill stream must be one of {BACKFILL_STREAMS}, got {stream!r}")
    entry_id = data.get("entry_id", "")
    return ControlRequest(action, symbols, reason, first, last, stream, entry_id)


def _trade_id(data: Mapping[str, str], name: str) -> int:
    text = data.get(name, "")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise DecodeError(f"backfill {name} must be a trade id (digits), got {text!r}")
    return int(text)
