"""Compute reconnect delays: capped exponential backoff with full jitter (pure, no sleeping).

A connection only counts as healthy, and resets the backoff, once it has stayed up for
``healthy_after_s``: a server that accepts and drops us at once keeps backing off instead of being
hammered.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """``delay = uniform(0, min(cap, base * 2**attempt))``; no attempt limit."""

    def __init__(
        self,
        *,
        base_s: float = 0.25,
        cap_s: float = 30.0,
        healthy_after_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.healthy_after_s = healthy_after_s
        self.rng = rng or random.Random()
        self.attempt = 0
        self._floor_s = 0.0

    def ceiling_s(self) -> float:
        """Upper bound of the next delay."""
        return float(min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 62)))

    def next_delay_s(self) -> float:
        """Delay before the next attempt; advances the attempt counter."""
        delay = max(self._floor_s, self.rng.uniform(0, self.ceiling_s()))
        self._floor_s = 0.0
        self.attempt += 1
        return delay

    def wait_at_least(self, seconds: float) -> None:
        """Make the next delay at least ``seconds`` (the venue's ``Retry-After``)."""
        self._floor_s = max(self._floor_s, seconds)

    def connection_ended(self, uptime_s: float) -> None:
        """Report how long the last connection lived; reset only if it was healthy."""
        if uptime_s >= self.healthy_after_s:
            self.attempt = 0
