"""Find holes in trade ids and budget REST weight (pure: no I/O, no clock).

:class:`SeenIds` (as :data:`TradeIds`) remembers the last trade id seen per symbol across every
connection of the ingestor; a live trade whose id jumps past ``last + 1`` (after a reconnect, or a
venue-side gap) reveals a hole to backfill over REST. Ids at or below the last one (the overlap of
a rotation, a duplicate) reveal nothing; aggregate trade ids (``@aggTrade``) are an id space of
their own, and depth diffs' update ids (:data:`DepthIds`) follow the same rule.
:class:`WeightBudget` spends Binance's per-minute REST weight evenly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

__all__ = [
    "DepthIds",
    "SeenIds",
    "TradeIds",
    "WeightBudget",
    "backfill_ids_of",
    "depth_ids_of",
    "depth_weight",
    "trade_id_of",
    "trade_of",
]


def trade_of(frame: str | bytes) -> tuple[str, int] | None:
    """Return ``(symbol, trade id)`` of a combined ``@trade`` frame, else ``None``."""
    found = trade_id_of(frame)
    if found is None or found[1] != "trades":
        return None
    return found[0], found[2]


#: A combined ``@trade`` frame as Binance writes it, up to its trade id: read without decoding
#: the whole frame (any other spelling goes through the JSON decoder).
_TRADE_TEXT = re.compile(
    r'\{"stream":"[a-z0-9]+@trade","data":\{"e":"trade","E":\d+,"s":"([A-Z0-9]+)","t":(\d+)[,}]'
)
_TRADE_BYTES = re.compile(_TRADE_TEXT.pattern.encode())


def trade_id_of(frame: str | bytes) -> tuple[str, str, int] | None:
    """Return ``(symbol, id space, id)`` of a combined ``@trade`` (id space ``trades``) or
    ``@aggTrade`` (``aggTrades``) frame, else ``None``."""
    found = (_TRADE_TEXT if isinstance(frame, str) else _TRADE_BYTES).match(frame)  # type: ignore[arg-type]
    if found is not None:
        symbol, trade_id = found.groups()
        return (symbol if isinstance(symbol, str) else symbol.decode()), "trades", int(trade_id)
    try:
        data = orjson.loads(frame)["data"]
        kind = data.get("e")
        if kind == "trade":
            return str(data["s"]).upper(), "trades", int(data["t"])
        if kind == "aggTrade":
            return str(data["s"]).upper(), "aggTrades", int(data["a"])
        return None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def backfill_ids_of(text: str | bytes) -> tuple[str, str, list[int]] | None:
    """Return ``(symbol, id space, ids)`` of a ``trades_backfill`` REST entry, else ``None``."""
    try:
        page = orjson.loads(text)
        path = str(page["request"]["path"])
        space, key = ("aggTrades", "a") if path.endswith("/aggTrades") else ("trades", "id")
        return str(page["symbol"]), space, [int(t[key]) for t in page["response"]]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def depth_ids_of(frame: str | bytes) -> tuple[str, int, int] | None:
    """Return ``(symbol, U, u)`` of a combined ``depthUpdate`` frame, else ``None``."""
    try:
        data = orjson.loads(frame)["data"]
        if data.get("e") != "depthUpdate":
            return None
        return str(data["s"]).upper(), int(data["U"]), int(data["u"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


@dataclass(slots=True)
class SeenIds:
    """The last id seen per symbol: a trade id, or the last update id ``u`` of a depth diff."""

    last: dict[str, int] = field(default_factory=dict)

    def seen(self, symbol: str, first: int, last: int | None = None) -> tuple[int, int] | None:
        """Record ids ``first..last`` (a trade: ``first`` alone); return the missing id range
        ``(first, last)`` if they do not follow on from the last one seen."""
        end = first if last is None else last
        before = self.last.get(symbol)
        if before is not None and end <= before:
            return None  # an overlap or a duplicate
        self.last[symbol] = end
        if before is not None and first > before + 1:
            return before + 1, first - 1
        return None


#: Trade ids (and aggregate trade ids, an id space of their own) per symbol.
TradeIds = SeenIds
#: Depth update ids per symbol: a diff ``U..u`` must start at the last ``u`` + 1.
DepthIds = SeenIds


def depth_weight(limit: int) -> int:
    """Return the REST weight of ``GET /api/v3/depth`` with ``limit``."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


@dataclass(slots=True)
class WeightBudget:
    """A token bucket of REST weight: ``per_minute`` refilled continuously, in ns time."""

    per_minute: float = 3000.0
    tokens: float = 3000.0
    updated_ns: int | None = None
    blocked_until_ns: int = 0

    def wait_ns(self, weight: int, now_ns: int) -> int:
        """Spend ``weight`` if available (return 0), else return how long to wait for it."""
        if now_ns < self.blocked_until_ns:
            return self.blocked_until_ns - now_ns
        if self.updated_ns is not None:
            elapsed_min = max(0, now_ns - self.updated_ns) / 60e9
            self.tokens = min(self.per_minute, self.tokens + elapsed_min * self.per_minute)
        self.updated_ns = now_ns
        if self.tokens >= weight:
            self.tokens -= weight
            return 0
        return int((weight - self.tokens) / self.per_minute * 60e9) + 1

    def block(self, now_ns: int, seconds: float) -> None:
        """Send nothing for ``seconds`` (the venue's ``Retry-After``, a 418 ban)."""
        self.blocked_until_ns = max(self.blocked_until_ns, now_ns + int(seconds * 1e9))
