"""Unit tests of the venue clock estimate (offset, uncertainty, state against the window)."""

from __future__ import annotations

import random

from tickpipe.common.units import MS
from tickpipe.common.venue_clock import ClockSample, VenueClock


def sample(true_offset_ns: int, sent_ns: int, out_ns: int, back_ns: int) -> ClockSample:
    """A request that took ``out_ns`` to reach the venue and ``back_ns`` to come back."""
    venue_ns = sent_ns + out_ns + true_offset_ns
    return ClockSample(sent_ns, venue_ns // MS, sent_ns + out_ns + back_ns)


def test_the_true_offset_lies_within_the_estimate_and_its_uncertainty() -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}")
    for _ in range(200):
        clock = VenueClock()
        true_offset = rng.randint(-20_000, 20_000) * MS + rng.randint(0, MS - 1)
        now = rng.randint(10**18, 2 * 10**18)
        for _ in range(rng.randint(1, 8)):
            now += rng.randint(1, 10**9)
            out, back = rng.randint(0, 50 * MS), rng.randint(0, 50 * MS)
            clock.add(sample(true_offset, now, out, back))
        assert abs(clock.offset_ns - true_offset) <= clock.uncertainty_ns, seed


def test_the_sample_with_the_shortest_round_trip_wins() -> None:
    clock = VenueClock()
    offset = 2_500 * MS
    clock.add(sample(offset, 10**18, 40 * MS, 1 * MS))  # asymmetric, slow: 19.5 ms off
    clock.add(sample(offset, 10**18 + 10**9, MS // 2, MS // 2))  # fast and symmetric
    assert abs(clock.offset_ns - offset) <= MS
    assert clock.uncertainty_ns <= MS + MS // 2
    assert clock.samples == 2


def test_no_sample_means_no_correction_and_an_unknown_state() -> None:
    clock = VenueClock()
    assert clock.offset_ns == 0 and clock.corrected(123) == 123
    assert clock.state(5000) == "unknown"


def test_the_state_warns_before_the_receive_window_and_alarms_beyond() -> None:
    def state(offset_ms: int) -> str:
        clock = VenueClock()
        clock.add(sample(offset_ms * MS, 10**18, MS // 4, MS // 4))
        return clock.state(5000)

    assert state(0) == "ok"
    assert state(2000) == "ok"
    assert state(3000) == "near"  # the venue runs ahead: our stamps look old
    assert state(6000) == "beyond"
    assert state(-400) == "ok"
    assert state(-700) == "near"  # the venue refuses stamps 1000 ms ahead of it
    assert state(-1500) == "beyond"


def test_old_samples_leave_the_window() -> None:
    clock = VenueClock(keep=3)
    clock.add(sample(0, 10**18, 0, 0))  # a perfect sample of an old offset
    for n in range(3):
        clock.add(sample(5000 * MS, 10**18 + (n + 1) * 10**9, 2 * MS, 2 * MS))
    assert abs(clock.offset_ns - 5000 * MS) <= clock.uncertainty_ns
    figures = clock.figures(5000)
    assert figures["venue_clock_samples"] == 3
    assert figures["venue_clock_state"] == "beyond"
