"""Unit tests of backfill planning: requests for the same ids are merged, never fetched twice."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tickpipe.ingestor.backfills import BackfillPlan, ranges_of, subtract

RAW = "tp:{binance:0}:raw"
S = 1_000_000_000


def test_subtract_leaves_the_uncovered_parts_in_order() -> None:
    assert subtract(10, 20, []) == [(10, 20)]
    assert subtract(10, 20, [(12, 13), (15, 15), (19, 30)]) == [(10, 11), (14, 14), (16, 18)]
    assert subtract(10, 20, [(0, 9), (21, 40)]) == [(10, 20)]
    assert subtract(10, 20, [(5, 25)]) == []
    assert subtract(10, 20, [(15, 18), (10, 16)]) == [(19, 20)]


def test_ranges_of_groups_consecutive_ids() -> None:
    assert ranges_of([5, 3, 4, 9, 10, 12, 4]) == [(3, 5), (9, 10), (12, 12)]
    assert ranges_of([]) == []


def test_a_repeated_request_is_merged_while_queued_running_and_after_it_ran() -> None:
    plan = BackfillPlan()
    assert plan.request(RAW, "BTCUSDT", "trades", 150, 200, "trade id gap", 0) == [(150, 200)]
    # the processor saw the same hole: queued already
    assert plan.request(RAW, "BTCUSDT", "trades", 150, 200, "processor", 1) == []
    job = plan.next_job()
    assert job is not None and (job.first_id, job.last_id) == (150, 200)
    assert job.reason == "trade id gap; processor"
    assert plan.request(RAW, "BTCUSDT", "trades", 160, 170, "again", 2) == []  # being fetched
    plan.finished(job, 200, 3 * S)
    assert plan.next_job() is None
    assert plan.request(RAW, "BTCUSDT", "trades", 140, 210, "wider", 4 * S) == [
        (140, 149),
        (201, 210),
    ]
    jobs = [plan.next_job(), plan.next_job(), plan.next_job()]
    assert [(j.first_id, j.last_id) for j in jobs if j] == [(140, 149), (201, 210)]


def test_other_symbols_and_id_spaces_are_not_merged() -> None:
    plan = BackfillPlan()
    plan.request(RAW, "BTCUSDT", "trades", 1, 10, "a", 0)
    assert plan.request(RAW, "BTCUSDT", "aggTrades", 1, 10, "b", 0) == [(1, 10)]
    assert plan.request(RAW, "ETHUSDT", "trades", 1, 10, "c", 0) == [(1, 10)]
    assert plan.pending() == 3


def test_queued_ranges_that_overlap_or_touch_become_one_job() -> None:
    plan = BackfillPlan()
    plan.request(RAW, "BTCUSDT", "trades", 100, 120, "a", 0)
    plan.request(RAW, "BTCUSDT", "trades", 150, 160, "b", 0)
    plan.request(RAW, "ETHUSDT", "trades", 1, 2, "c", 0)
    assert plan.request(RAW, "BTCUSDT", "trades", 121, 149, "d", 0) == [(121, 149)]
    jobs = [plan.next_job() for _ in range(3)]
    got = [(j.symbol, j.first_id, j.last_id, j.reason) for j in jobs if j]
    assert got == [("BTCUSDT", 100, 160, "a; b; d"), ("ETHUSDT", 1, 2, "c")]


def test_fetched_ranges_are_forgotten_after_a_while_or_when_forced() -> None:
    plan = BackfillPlan(remember_ns=60 * S)
    plan.request(RAW, "BTCUSDT", "trades", 1, 100, "a", 0)
    job = plan.next_job()
    assert job is not None
    plan.finished(job, 100, 0)
    assert plan.request(RAW, "BTCUSDT", "trades", 1, 100, "b", 59 * S) == []
    assert plan.request(RAW, "BTCUSDT", "trades", 50, 60, "lost", 59 * S, force=True) == [(50, 60)]
    assert plan.request(RAW, "BTCUSDT", "trades", 1, 100, "c", 61 * S) == [(1, 49), (61, 100)]


def test_a_failed_job_remembers_only_the_ids_it_settled() -> None:
    plan = BackfillPlan()
    plan.request(RAW, "BTCUSDT", "trades", 1, 3000, "a", 0)
    job = plan.next_job()
    assert job is not None
    plan.finished(job, 1999, 1)  # two pages fetched, then refused
    assert plan.request(RAW, "BTCUSDT", "trades", 1, 3000, "again", 2) == [(2000, 3000)]
    job = plan.next_job()
    assert job is not None
    plan.finished(job, job.first_id - 1, 3)  # refused at once: nothing settled
    assert plan.request(RAW, "BTCUSDT", "trades", 2500, 2600, "again", 4) == [(2500, 2600)]


@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 20), st.booleans()), min_size=1, max_size=30
    )
)
def test_every_requested_id_is_fetched_once_in_any_order_of_requests(
    requests: list[tuple[int, int, bool]],
) -> None:
    """Requests arrive while jobs run: each id asked for ends up in exactly one job."""
    plan = BackfillPlan()
    fetched: list[int] = []
    asked: set[int] = set()
    for n, (first, length, run_one) in enumerate(requests):
        plan.request(RAW, "BTCUSDT", "trades", first, first + length, f"r{n}", n)
        asked.update(range(first, first + length + 1))
        if run_one:
            job = plan.next_job()
            if job is not None:
                fetched.extend(range(job.first_id, job.last_id + 1))
                plan.finished(job, job.last_id, n)
    while (job := plan.next_job()) is not None:
        fetched.extend(range(job.first_id, job.last_id + 1))
        plan.finished(job, job.last_id, len(requests))
    assert sorted(fetched) == sorted(asked)
