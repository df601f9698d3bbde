"""A venue answering with garbage: the trader's answer parsing raises one known error, or returns.

Whatever the WebSocket API sends back (wrong types, missing fields, absurd codes), ``result_of``
and ``list_result_of`` either return the result or raise a :class:`common.errors.TickpipeError`
subclass with a message; never a ``KeyError``/``TypeError`` that would kill the trader.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import AmbiguousOutcome, TickpipeError
from venues.binance.orders import list_result_of, result_of
from venues.binance.ws_api import BinanceWsApi

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ANSWER = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "status": st.one_of(st.sampled_from([200, 400, 401, 403, 409, 418, 429, 500, 503]), JSON),
        "result": JSON,
        "error": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "code": st.one_of(st.integers(-3000, 0), JSON),
                    "msg": JSON,
                    "data": JSON,
                    "retryAfter": JSON,
                },
            ),
            JSON,
        ),
        "rateLimits": JSON,
    },
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(ANSWER, st.one_of(st.none(), st.integers(0, 2**62)))
def test_any_answer_gives_a_result_or_one_known_error(
    answer: dict[str, Any], now: int | None
) -> None:
    for parse in (result_of, list_result_of):
        try:
            out = parse(answer, now_ms=now)
        except TickpipeError as exc:
            assert str(exc)
            continue
        assert isinstance(out, dict | list)


def test_an_empty_or_resultless_success_is_ambiguous() -> None:
    for answer in ({}, {"status": 200}, {"status": 200, "result": "ok"}, {"status": 503}):
        try:
            result_of(answer)
        except AmbiguousOutcome:
            continue
        except TickpipeError:
            assert answer.get("status") == 200  # a 2xx without a usable result may be refused
            continue
        raise AssertionError(f"{answer} was accepted")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.one_of(
        ANSWER.map(json.dumps),
        st.fixed_dictionaries(
            {"id": st.text(max_size=3), "status": st.sampled_from([200, 418, 429])},
            optional={"rateLimits": JSON, "error": JSON},
        ).map(json.dumps),
        st.binary(max_size=64),
        st.text(max_size=64),
    )
)
def test_the_ws_api_client_survives_any_frame(frame: bytes | str) -> None:
    """A garbage frame is logged and dropped; it never kills the connection's reader."""
    api = BinanceWsApi("ws://127.0.0.1:9")
    api._receive(frame)  # raises nothing
