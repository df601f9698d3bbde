"""Capped exponential backoff with full jitter."""

from __future__ import annotations

import random

from tickpipe.common.backoff import Backoff


def test_delays_grow_to_the_cap_and_stay_within_it() -> None:
    b = Backoff(base_s=0.5, cap_s=8.0, rng=random.Random(1))
    ceilings = []
    for _ in range(10):
        ceilings.append(b.ceiling_s())
        assert 0 <= b.next_delay_s() <= ceilings[-1]
    assert ceilings[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(ceilings) == 8.0


def test_full_jitter_spreads_delays() -> None:
    b = Backoff(base_s=1.0, cap_s=1.0, rng=random.Random(2))
    delays = [b.next_delay_s() for _ in range(200)]
    assert min(delays) < 0.1 and max(delays) > 0.9


def test_short_lived_connection_does_not_reset_backoff() -> None:
    b = Backoff(base_s=1.0, cap_s=60.0, healthy_after_s=10.0, rng=random.Random(3))
    for _ in range(4):
        b.next_delay_s()
    b.connection_ended(uptime_s=0.5)  # accepted then dropped at once
    assert b.ceiling_s() == 16.0
    b.connection_ended(uptime_s=30.0)
    assert b.ceiling_s() == 1.0


def test_retry_after_sets_a_floor_once() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0, rng=random.Random(4))
    b.wait_at_least(5.0)
    assert b.next_delay_s() == 5.0
    assert b.next_delay_s() <= 1.0


def test_no_attempt_limit() -> None:
    b = Backoff(base_s=0.1, cap_s=2.0, rng=random.Random(5))
    for _ in range(10_000):
        assert b.next_delay_s() <= 2.0
