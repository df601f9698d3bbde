"""The retention policy: keep maxlen entries, never trim what a consumer group has not read."""

from __future__ import annotations

import pytest

from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import load_settings
from tickpipe.processor.retention import (
    GroupView,
    TrimDecision,
    decide_trim,
    id_after,
    maxlen_for,
    safe_minid,
)


def test_id_after_is_the_next_sequence_number() -> None:
    assert id_after("5-0") == "5-1"
    assert id_after("1723161254000-41") == "1723161254000-42"


def test_safe_minid_is_the_least_read_point_of_all_groups() -> None:
    read_to_9 = GroupView("a", "9-0")
    read_to_5 = GroupView("b", "5-3")
    assert safe_minid([read_to_9, read_to_5]) == "5-4"
    pending = GroupView("c", "9-0", oldest_pending="2-0")  # delivered, not acknowledged
    assert safe_minid([read_to_9, pending]) == "2-0"
    assert safe_minid([]) == ""  # nobody reads with a group: unconstrained
    assert safe_minid([read_to_9], required=["processor"]) is None


def test_within_its_length_a_stream_is_not_trimmed() -> None:
    assert decide_trim(length=10, maxlen=10, first_kept=None, groups=[]) == TrimDecision(None)


def test_read_entries_are_trimmed_to_the_policy() -> None:
    decision = decide_trim(length=20, maxlen=10, first_kept="11-0", groups=[GroupView("g", "15-0")])
    assert decision == TrimDecision("11-0")
    no_groups = decide_trim(length=20, maxlen=10, first_kept="11-0", groups=[])
    assert no_groups == TrimDecision("11-0")


def test_unread_entries_are_kept_and_raise_an_alarm() -> None:
    decision = decide_trim(length=20, maxlen=10, first_kept="11-0", groups=[GroupView("g", "6-0")])
    assert decision.minid == "6-1"  # what was read still goes
    assert decision.alarm is not None and "not read" in decision.alarm
    pending = GroupView("g", "15-0", oldest_pending="3-0")
    decision = decide_trim(length=20, maxlen=10, first_kept="11-0", groups=[pending])
    assert decision.minid == "3-0" and decision.alarm


def test_raw_waits_for_the_processor_group() -> None:
    decision = decide_trim(
        length=20, maxlen=10, first_kept="11-0", groups=[], required=["processor"]
    )
    assert decision.minid is None and decision.alarm and "processor" in decision.alarm
    ok = decide_trim(
        length=20,
        maxlen=10,
        first_kept="11-0",
        groups=[GroupView("processor", "19-0")],
        required=["processor"],
    )
    assert ok == TrimDecision("11-0")


def test_maxlen_is_configured_per_stream_kind() -> None:
    settings = load_settings(
        {"TICKPIPE_RETENTION_MAXLEN": "raw=5000, quotes=100"}, dotenv_path=None
    )
    policy = settings.retention_maxlen
    assert maxlen_for("raw", policy) == 5000
    assert maxlen_for("quotes", policy) == 100
    assert maxlen_for("trades", policy) == 1_000_000
    every = load_settings({"TICKPIPE_RETENTION_MAXLEN": "42"}, dotenv_path=None)
    assert maxlen_for("book", every.retention_maxlen) == 42
    with pytest.raises(ConfigError):
        load_settings({"TICKPIPE_RETENTION_MAXLEN": "raw=0"}, dotenv_path=None)
