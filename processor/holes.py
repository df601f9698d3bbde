"""Keep each trade-id hole open until a backfill fills it or the ingestor gives up (pure, no I/O).

When a symbol's trade ids jump (Binance ``@trade`` and ``@aggTrade`` ids are contiguous), the
processor records a gap and asks the ingestor for the missing ids over REST, through the
partition's ``control`` stream (:class:`~processor.records.BackfillRequest`). The hole stays
open here, in the checkpoint, until one of these settles it, each with a
:class:`~processor.records.GapResolution` in the ``gaps`` stream:

* backfilled trades fill every id of it: ``backfilled``;
* the ingestor's ``backfill_done`` marker for it arrives and ids are still missing:
  ``unrecoverable``, with the marker's error or "venue returned no trades for ids a..b";
* more than :data:`~processor.tradeids.MAX_MISSING_RANGES` ranges are missing for one id space:
  the oldest is given up, ``unrecoverable``.

An ingestor that (re)starts cannot have seen the requests written while it was away: on the
first ``connect`` marker of a new ingestor run every open hole is asked for again, once.
Everything here is a pure function of the raw entries, so a takeover resumes the same holes.
"""

from __future__ import annotations

from typing import Any

from tickpipe.processor.markers import BackfillDone
from tickpipe.processor.records import BackfillRequest, GapResolution
from tickpipe.processor.tradeids import MAX_MISSING_RANGES, TradeIds

__all__ = ["Holes", "id_space"]

#: How many missing ranges a reason names before it only counts the rest.
_NAMED_RANGES = 5


def id_space(symbol: str, stream: str) -> str:
    """Return the :class:`TradeIds` key of ``symbol``'s ``trades`` or ``aggTrades`` ids."""
    return symbol if stream == "trades" else f"{symbol}@agg"


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    named = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in ranges[:_NAMED_RANGES])
    more = len(ranges) - _NAMED_RANGES
    return named + (f" and {more} more ranges" if more > 0 else "")


class Holes:
    """The open trade-id holes of a partition, as ``[symbol, stream, first, last]``, oldest first.

    ``run`` is the run token of the last ingestor seen connecting. Checkpointable.
    """

    def __init__(self, venue: str, trade_ids: TradeIds) -> None:
        self.venue = venue
        self.trade_ids = trade_ids
        self.open: list[list[Any]] = []
        self.run = ""

    def missing(self, hole: list[Any]) -> list[tuple[int, int]]:
        """Return the ranges of ``hole``'s ids that are still missing."""
        symbol, stream, first, last = hole
        out = []
        for a, b in self.trade_ids.missing.get(id_space(symbol, stream), ()):
            lo, hi = max(a, first), min(b, last)
            if lo <= hi:
                out.append((lo, hi))
        return out

    def _request(self, hole: list[Any], reason: str, entry_id: str) -> BackfillRequest:
        symbol, stream, first, last = hole
        return BackfillRequest(symbol, stream, first, last, reason, entry_id)

    def _resolution(
        self, hole: list[Any], reason: str, entry_id: str, ts_now: int, forgotten: int = 0
    ) -> GapResolution:
        missing = forgotten + sum(b - a + 1 for a, b in self.missing(hole))
        symbol, stream, first, last = hole
        return GapResolution(
            venue=self.venue,
            symbol=symbol,
            stream=stream,
            first_id=first,
            last_id=last,
            status="unrecoverable" if missing else "backfilled",
            reason=reason,
            missing=missing,
            entry_id=entry_id,
            ts_proc=ts_now,
        )

    def open_hole(
        self,
        symbol: str,
        stream: str,
        first: int,
        last: int,
        entry_id: str,
        ts_now: int,
    ) -> tuple[BackfillRequest, list[GapResolution]]:
        """Open a hole of ids ``first..last``; return its request and what it pushed out.

        Call it right after :meth:`TradeIds.see` reported the gap: ranges the tracker had to
        forget then are given up here.
        """
        hole = [symbol, stream, first, last]
        given_up = []
        for space, a, b in self.trade_ids.take_forgotten():
            for old in [h for h in self.open if id_space(h[0], h[1]) == space]:
                lost = min(b, old[3]) - max(a, old[2]) + 1
                if lost > 0:
                    self.open.remove(old)
                    why = f"more than {MAX_MISSING_RANGES} ranges of {old[0]} ids missing: "
                    given_up.append(
                        self._resolution(old, why + "the oldest given up", entry_id, ts_now, lost)
                    )
        self.open.append(hole)
        reason = f"trade id gap: expected {first}, got {last + 1}"
        return self._request(hole, reason, entry_id), given_up

    def on_backfilled(
        self, symbol: str, stream: str, trade_id: int, entry_id: str, ts_now: int
    ) -> GapResolution | None:
        """Note a backfilled trade; return the resolution when it filled the last id of a hole."""
        for hole in self.open:
            if hole[0] == symbol and hole[1] == stream and hole[2] <= trade_id <= hole[3]:
                if self.missing(hole):
                    return None
                self.open.remove(hole)
                return self._resolution(hole, "every missing trade came back", entry_id, ts_now)
        return None

    def on_backfill_done(
        self, done: BackfillDone, entry_id: str, ts_now: int
    ) -> list[GapResolution]:
        """Settle the open holes a finished backfill covered; ids still missing are given up."""
        out = []
        for hole in [h for h in self.open if h[0] == done.symbol and h[1] == done.stream]:
            if hole[3] < done.first_id or done.last_id < hole[2]:
                continue
            self.open.remove(hole)
            missing = self.missing(hole)
            if not missing:
                continue  # resolved when the last missing trade came
            if done.error:
                reason = f"backfill {done.outcome}: {done.error}"
            else:
                reason = f"venue returned no trades for ids {_ranges_text(missing)}"
                if done.outcome != "complete":
                    reason = f"backfill {done.outcome}: {reason}"
            out.append(self._resolution(hole, reason, entry_id, ts_now))
        return out

    def on_connect(self, run: str, entry_id: str) -> list[BackfillRequest]:
        """Ask again for every open hole when ``run`` names an ingestor not seen before."""
        if run == self.run:
            return []
        self.run = run
        reason = f"asked again: ingestor run {run} connected"
        return [self._request(hole, reason, entry_id) for hole in self.open]

    def to_state(self) -> dict[str, Any]:
        """Return msgpack-friendly values (checkpoint)."""
        return {"open": self.open, "run": self.run}

    def load_state(self, data: dict[str, Any]) -> None:
        """Replace the state with one saved by :meth:`to_state`."""
        self.open = [[str(s), str(t), int(a), int(b)] for s, t, a, b in data.get("open", [])]
        self.run = str(data.get("run", ""))
