"""Merge trade backfill requests and remember what was fetched (pure: no I/O, no clock).

A backfill asks the venue's REST API for the trades of one *id space* of a symbol, its trade ids
(``trades``) or its aggregate trade ids (``aggTrades``), from ``first_id`` to ``last_id``
inclusive. Requests come from the ingestor's own gap detection, from the processor through the
control stream, and from the writer when Redis lost frames it had acknowledged. Several of them
often name the same hole; :class:`BackfillPlan` fetches each id once:

* the part of a request already fetched within ``remember_ns``, or being fetched now, is not
  fetched again;
* what remains joins a queued job of the same id space that it overlaps or touches, else it
  becomes a new job; jobs run oldest first;
* ``force`` (the pages that held those ids were lost) forgets what was fetched of the range.

Times are integer nanoseconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ID_SPACES", "BackfillJob", "BackfillPlan", "Range", "ranges_of", "subtract"]

#: The id spaces a backfill can name: trade ids and aggregate trade ids.
ID_SPACES = ("trades", "aggTrades")

#: An inclusive range of ids.
Range = tuple[int, int]


def subtract(first: int, last: int, covered: Iterable[Range]) -> list[Range]:
    """Return the parts of ``first..last`` that no range of ``covered`` holds, in order."""
    out: list[Range] = []
    cursor = first
    for a, b in sorted(covered):
        if b < cursor:
            continue
        if a > last:
            break
        if a > cursor:
            out.append((cursor, a - 1))
        cursor = b + 1
        if cursor > last:
            return out
    if cursor <= last:
        out.append((cursor, last))
    return out


def ranges_of(ids: Iterable[int]) -> list[Range]:
    """Group ids into maximal runs of consecutive ids, in order (repeats are ignored)."""
    out: list[Range] = []
    for n in sorted(set(ids)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


@dataclass(slots=True)
class BackfillJob:
    """One contiguous range of one id space to fetch, and why (every request it serves)."""

    raw: str  # the raw stream its pages and marker go to
    symbol: str
    stream: str  # "trades" | "aggTrades"
    first_id: int
    last_id: int
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """Return the reasons of the requests this job serves, joined."""
        return "; ".join(self.reasons)

    @property
    def size(self) -> int:
        """Return how many ids the job asks for."""
        return self.last_id - self.first_id + 1


@dataclass(slots=True)
class BackfillPlan:
    """The queued backfill jobs, the one being fetched, and the ranges fetched recently."""

    remember_ns: int = 600 * 1_000_000_000
    remember_max: int = 1024
    queued: list[BackfillJob] = field(default_factory=list)
    active: BackfillJob | None = None
    #: Per ``(symbol, stream)``: the ranges served recently, with when (ns).
    fetched: dict[tuple[str, str], list[tuple[int, int, int]]] = field(default_factory=dict)

    def request(
        self,
        raw: str,
        symbol: str,
        stream: str,
        first: int,
        last: int,
        reason: str,
        now_ns: int,
        *,
        force: bool = False,
    ) -> list[Range]:
        """Plan a backfill of ``first..last``; return the ranges that are new work.

        An empty answer means every id was fetched recently, is being fetched, or is queued.
        """
        if stream not in ID_SPACES:
            raise ValueError(f"stream must be one of {ID_SPACES}, got {stream!r}")
        if first > last:
            raise ValueError(f"first id {first} is after last id {last}")
        key = (symbol, stream)
        if force:
            self._forget(key, first, last)
        self._expire(key, now_ns)
        busy = [(a, b) for a, b, _ in self.fetched.get(key, ())]
        active = self.active
        if active is not None and (active.symbol, active.stream) == key:
            busy.append((active.first_id, active.last_id))
        remaining = subtract(first, last, busy)
        queued = [(j.first_id, j.last_id) for j in self.queued if (j.symbol, j.stream) == key]
        fresh = [part for a, b in remaining for part in subtract(a, b, queued)]
        for a, b in remaining:
            self._queue(BackfillJob(raw, symbol, stream, a, b, [reason]))
        return fresh

    def _queue(self, job: BackfillJob) -> None:
        """Join ``job`` with the queued jobs of its id space it overlaps or touches."""
        key = (job.symbol, job.stream)
        into: BackfillJob | None = None
        kept: list[BackfillJob] = []
        for other in self.queued:
            touches = other.first_id <= job.last_id + 1 and job.first_id <= other.last_id + 1
            if (other.symbol, other.stream) != key or not touches:
                kept.append(other)
                continue
            if into is None:
                into = other
                kept.append(other)
            else:
                into.first_id = min(into.first_id, other.first_id)
                into.last_id = max(into.last_id, other.last_id)
                into.reasons.extend(r for r in other.reasons if r not in into.reasons)
        if into is None:
            kept.append(job)
        else:
            into.first_id = min(into.first_id, job.first_id)
            into.last_id = max(into.last_id, job.last_id)
            into.reasons.extend(r for r in job.reasons if r not in into.reasons)
        self.queued = kept

    def next_job(self) -> BackfillJob | None:
        """Take the oldest queued job; it is the active one until :meth:`finished`."""
        if not self.queued:
            return None
        self.active = self.queued.pop(0)
        return self.active

    def finished(self, job: BackfillJob, settled_last: int, now_ns: int) -> None:
        """Record that ids ``job.first_id..settled_last`` are served (none if it is lower)."""
        if self.active is job:
            self.active = None
        if settled_last >= job.first_id:
            spans = self.fetched.setdefault((job.symbol, job.stream), [])
            spans.append((job.first_id, min(settled_last, job.last_id), now_ns))
            del spans[: max(0, len(spans) - self.remember_max)]

    def pending(self) -> int:
        """Return how many jobs are queued or being fetched."""
        return len(self.queued) + (self.active is not None)

    def _expire(self, key: tuple[str, str], now_ns: int) -> None:
        spans = self.fetched.get(key)
        if spans:
            spans[:] = [s for s in spans if now_ns - s[2] <= self.remember_ns]

    def _forget(self, key: tuple[str, str], first: int, last: int) -> None:
        spans = self.fetched.get(key)
        if not spans:
            return
        kept: list[tuple[int, int, int]] = []
        for a, b, at in spans:
            kept.extend((x, y, at) for x, y in subtract(a, b, [(first, last)]))
        spans[:] = kept
