"""Tell whether an event's time, price and quantity can be believed (pure, no I/O).

Every venue event carries two clocks: the venue's event time and the ingestor's receive time.
An event time more than ``ahead_ns`` after its receive time is impossible beyond clock skew; one
more than ``age_ns`` before it is implausible for a frame that arrived live (a REST backfill
legitimately carries old trades, and ``tickpipe replay`` writes recorded frames with their
recorded receive times, so both clocks stay consistent there). A trade must have a price and a
quantity above zero. The processor turns every problem found here into a dead letter whose
reason names the event, the value and the bound, so that no single frame can move the
partition's watermark (and with it the finalisation of every bar) somewhere absurd.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickpipe.common.schema import Quote, Trade
from tickpipe.common.units import MS

__all__ = ["DEFAULT_MAX_AGE_MS", "DEFAULT_MAX_AHEAD_MS", "Plausibility"]

#: Defaults of ``TICKPIPE_MAX_EVENT_AHEAD_MS`` and ``TICKPIPE_MAX_EVENT_AGE_MS``.
DEFAULT_MAX_AHEAD_MS = 10_000
DEFAULT_MAX_AGE_MS = 3_600_000


#: Decimal strings already found above zero (trades repeat prices and sizes): checked once each.
_POSITIVE: set[str] = set()


def _positive(text: str) -> bool:
    if text in _POSITIVE:
        return True
    try:
        good = float(text) > 0
    except ValueError:
        return False
    if good:
        if len(_POSITIVE) >= 4096:
            _POSITIVE.clear()
        _POSITIVE.add(text)
    return good


@dataclass(frozen=True, slots=True)
class Plausibility:
    """The bounds an event's time must keep from its receive time, in nanoseconds."""

    ahead_ns: int = DEFAULT_MAX_AHEAD_MS * MS
    age_ns: int = DEFAULT_MAX_AGE_MS * MS

    @classmethod
    def from_ms(cls, ahead_ms: int, age_ms: int) -> Plausibility:
        """Build the bounds from milliseconds (the settings' unit)."""
        return cls(ahead_ms * MS, age_ms * MS)

    def time_problem(self, ts_event: int, ts_recv: int, *, live: bool) -> str | None:
        """Return why ``ts_event`` cannot be believed for an event received at ``ts_recv``."""
        lead = ts_event - ts_recv
        if lead > self.ahead_ns:
            return (
                f"event time {ts_event} ns is {lead // MS} ms ahead of its receive time "
                f"{ts_recv} ns (at most {self.ahead_ns // MS} ms allowed, "
                "TICKPIPE_MAX_EVENT_AHEAD_MS)"
            )
        if live and -lead > self.age_ns:
            return (
                f"event time {ts_event} ns is {-lead // MS} ms older than its receive time "
                f"{ts_recv} ns in a live frame (at most {self.age_ns // MS} ms allowed, "
                "TICKPIPE_MAX_EVENT_AGE_MS)"
            )
        return None

    def trade_problem(self, trade: Trade, *, live: bool) -> str | None:
        """Return why ``trade`` cannot be believed, or ``None``."""
        lead = trade.ts_event - trade.ts_recv
        if (
            lead <= self.ahead_ns
            and (-lead <= self.age_ns or not live)
            and trade.price in _POSITIVE
            and trade.qty in _POSITIVE
        ):
            return None  # the usual case, without building a message
        if not _positive(trade.price):
            problem: str | None = f"price must be above zero, got {trade.price!r}"
        elif not _positive(trade.qty):
            problem = f"quantity must be above zero, got {trade.qty!r}"
        else:
            problem = self.time_problem(trade.ts_event, trade.ts_recv, live=live)
        return None if problem is None else f"trade {trade.trade_id} of {trade.symbol}: {problem}"

    def quote_problem(self, quote: Quote, *, live: bool) -> str | None:
        """Return why ``quote`` cannot be believed, or ``None``.

        A side may be empty (price and size both zero: nothing on offer), but a price without a
        size or a size without a price is not a quote.
        """
        problem = self.time_problem(quote.ts_event, quote.ts_recv, live=live)
        for side, price, qty in (
            ("bid", quote.bid_price, quote.bid_qty),
            ("ask", quote.ask_price, quote.ask_qty),
        ):
            if _positive(price) != _positive(qty):
                problem = f"{side} price {price!r} and size {qty!r} must both be above zero"
        if problem is None:
            return None
        return f"quote {quote.update_id or quote.ts_event} of {quote.symbol}: {problem}"
