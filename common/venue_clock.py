"""Estimate a venue's clock offset from timed requests to its server-time endpoint (pure).

A :class:`ClockSample` is one request: the local wall-clock time it left (``sent_ns``), the
venue's time in its answer (``venue_ms``, whole milliseconds) and the local time the answer came
back (``received_ns``). The venue read its clock somewhere between the two local stamps, so

    offset = venue time - local time ~ venue_ms + 0.5 ms - (sent_ns + received_ns) / 2

within ``round trip / 2 + 0.5 ms`` (the venue truncates to milliseconds). :class:`VenueClock`
keeps the last ``keep`` samples and trusts the one with the shortest round trip, as NTP's clock
filter does: queueing delays only ever lengthen a round trip, so the shortest one is the least
distorted. Its ``offset_ns`` is added to local time to stamp signed requests
(:meth:`VenueClock.corrected`).

:meth:`VenueClock.state` judges the offset against the venue's receive window as an
*uncorrected* clock would fare: Binance refuses a request stamped 1000 ms or more ahead of its
clock, or older than ``recvWindow``. ``near`` is halfway to either limit (a warning), ``beyond``
past it (an alarm: the host clock needs fixing even though corrected stamps still pass).
Times are integer nanoseconds passed in by the caller; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tickpipe.common.units import MS

__all__ = [
    "AHEAD_LIMIT_MS",
    "DEFAULT_RECV_WINDOW_MS",
    "SKEW_MARGIN_MS",
    "ClockSample",
    "VenueClock",
]

#: The venue refuses a request stamped this far ahead of its own clock (Binance: 1000 ms).
AHEAD_LIMIT_MS = 1000
#: The receive window of a signed request that names none (Binance: 5000 ms).
DEFAULT_RECV_WINDOW_MS = 5000
#: The margin for clock skew after a receive window: past the window and this margin after a
#: request's stamp, no copy of that request can be accepted any more.
SKEW_MARGIN_MS = 1000


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One timed request to the venue's server-time endpoint."""

    sent_ns: int
    venue_ms: int
    received_ns: int

    @property
    def round_trip_ns(self) -> int:
        return self.received_ns - self.sent_ns

    @property
    def offset_ns(self) -> int:
        """Return venue time minus local time, at the round trip's midpoint."""
        return self.venue_ms * MS + MS // 2 - (self.sent_ns + self.received_ns) // 2

    @property
    def uncertainty_ns(self) -> int:
        """Return the bound on how far the true offset can be from :attr:`offset_ns`."""
        return (self.round_trip_ns + 1) // 2 + MS // 2 + 1


@dataclass(slots=True)
class VenueClock:
    """The venue clock's offset from ours, from the best of the last ``keep`` samples."""

    keep: int = 8
    _samples: deque[ClockSample] = field(default_factory=deque)

    def add(self, sample: ClockSample) -> None:
        """Keep ``sample`` (one with a negative round trip, a clock step, is ignored)."""
        if sample.round_trip_ns < 0:
            return
        self._samples.append(sample)
        while len(self._samples) > self.keep:
            self._samples.popleft()

    @property
    def samples(self) -> int:
        return len(self._samples)

    def _best(self) -> ClockSample | None:
        return min(self._samples, key=lambda s: s.round_trip_ns, default=None)

    @property
    def offset_ns(self) -> int:
        """Return venue time minus local time (0 until a sample is in)."""
        best = self._best()
        return 0 if best is None else best.offset_ns

    @property
    def uncertainty_ns(self) -> int:
        """Return how far the true offset can be from :attr:`offset_ns` (0 with no sample)."""
        best = self._best()
        return 0 if best is None else best.uncertainty_ns

    def corrected(self, local_ns: int) -> int:
        """Return the venue's time at local time ``local_ns``, as far as it is known."""
        return local_ns + self.offset_ns

    def state(self, recv_window_ms: int) -> str:
        """Return ``unknown``, ``ok``, ``near`` or ``beyond`` for an uncorrected clock."""
        if not self._samples:
            return "unknown"
        worst_ms = (abs(self.offset_ns) + self.uncertainty_ns) / MS
        limit_ms = recv_window_ms if self.offset_ns > 0 else AHEAD_LIMIT_MS
        if worst_ms > limit_ms:
            return "beyond"
        if worst_ms > limit_ms / 2:
            return "near"
        return "ok"

    def warning(self, recv_window_ms: int) -> str | None:
        """Return the operator's message for a ``near`` or ``beyond`` state, else ``None``."""
        state = self.state(recv_window_ms)
        if state not in ("near", "beyond"):
            return None
        where = "past" if state == "beyond" else "halfway to"
        return (
            f"the venue's clock is {self.offset_ns / MS:+.0f} ms from ours ({where} the venue's "
            f"limits: recvWindow {recv_window_ms} ms, {AHEAD_LIMIT_MS} ms ahead); signed "
            "requests carry corrected time, but fix the host clock (NTP)"
        )

    def figures(self, recv_window_ms: int) -> dict[str, Any]:
        """Return the estimate as health figures (``venue_clock_*``)."""
        return {
            "venue_clock_offset_ms": round(self.offset_ns / MS, 3),
            "venue_clock_uncertainty_ms": round(self.uncertainty_ns / MS, 3),
            "venue_clock_samples": self.samples,
            "venue_clock_state": self.state(recv_window_ms),
        }
