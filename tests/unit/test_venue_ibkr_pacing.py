"""The IBKR REST budget: under the gateway's limits, and silent for the whole penalty."""

from __future__ import annotations

from tickpipe.venues.ibkr.pacing import RestBudget

S = 1_000_000_000
T0 = 1_000 * S


def test_after_a_429_nothing_leaves_until_the_penalty_is_over() -> None:
    budget = RestBudget(per_s=4, penalty_s=600)
    assert budget.delay_ns("POST", "/iserver/account/DU1/orders", T0) == 0
    budget.sent("POST", "/iserver/account/DU1/orders", T0)
    assert budget.refused(T0) == 600.0
    for offset_s in (0, 1, 60, 599):
        now = T0 + offset_s * S
        for method, path in (("POST", "/tickle"), ("GET", "/iserver/auth/status")):
            assert budget.delay_ns(method, path, now) == T0 + 600 * S - now
    assert budget.delay_ns("POST", "/tickle", T0 + 600 * S) == 0


def test_the_global_rate_stays_under_the_gateways_ten_a_second() -> None:
    budget = RestBudget(per_s=4, penalty_s=600)
    now, sent = T0, []
    while now < T0 + 10 * S:
        if budget.delay_ns("GET", "/iserver/auth/status", now) == 0:
            budget.sent("GET", "/iserver/auth/status", now)
            sent.append(now)
        now += S // 100
    for i in range(len(sent)):
        in_window = [t for t in sent[i:] if t < sent[i] + S]
        assert len(in_window) <= 4


def test_paced_endpoints_keep_their_intervals() -> None:
    budget = RestBudget(per_s=10, penalty_s=600)
    budget.sent("GET", "/iserver/account/orders", T0)
    assert budget.delay_ns("GET", "/iserver/account/orders", T0 + S) == int(4.5 * S)
    assert budget.delay_ns("GET", "/iserver/account/orders", T0 + 6 * S) == 0
    budget.sent("POST", "/tickle", T0)
    assert budget.delay_ns("POST", "/tickle", T0 + S // 2) > 0
    assert budget.delay_ns("POST", "/iserver/auth/status", T0 + S // 2) == 0


def test_a_first_429_to_a_kept_endpoint_limit_waits_that_endpoint_then_the_penalty() -> None:
    # A restarted trader's first order list: the one it replaced listed them a moment ago.
    budget = RestBudget(per_s=4, penalty_s=600)
    orders = ("GET", "/iserver/account/orders")
    assert budget.delay_ns(*orders, T0) == 0
    budget.sent(*orders, T0)
    assert budget.refused(T0, *orders) == 5.5  # that endpoint waits its interval
    assert budget.penalties == 0
    assert budget.delay_ns("GET", "/iserver/auth/status", T0) == 0  # nothing else waits
    assert budget.endpoint_delay_ns(*orders, T0 + S) == int(4.5 * S)  # taken outside the turn
    assert budget.delay_ns(*orders, T0 + int(5.5 * S)) == 0
    budget.sent(*orders, T0 + int(5.5 * S))
    assert budget.refused(T0 + int(5.5 * S), *orders) == 600.0  # twice in a row: the penalty box
    assert budget.penalties == 1
    budget.answered()
    assert budget.refused(T0 + 700 * S, *orders) == 5.5  # served in between: a first one again
