"""Which Redis errors are back-pressure (wait and retry), and what a warning quotes of them."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions as rexc
from redis._parsers.base import BaseParser

from common.errors import ConfigError, RedisUnavailable
from common.redis_io import (
    REDIS_DOWN,
    is_redis_down,
    redis_condition,
    redis_errors,
    redis_reason,
    refusal_error,
    unavailable_line,
)

#: What redis-server answers when it refuses a command for now, one per refusal code.
REFUSALS = [
    "OOM command not allowed when used memory > 'maxmemory'.",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or FUNCTION KILL.",
    "LOADING Redis is loading the dataset in memory",
    "MISCONF Errors writing to the AOF file: No space left on device",
    "READONLY You can't write against a read only replica.",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "CLUSTERDOWN The cluster is down",
]


def _raise_in_redis_errors(exc: BaseException) -> BaseException:
    """Return what :func:`redis_errors` turns ``exc`` into."""

    async def go() -> None:
        async with redis_errors():
            raise exc

    try:
        asyncio.run(go())
    except BaseException as out:  # the translation is what is tested
        return out
    raise AssertionError("redis_errors swallowed the error")


@pytest.mark.parametrize("reply", REFUSALS)
def test_every_refusal_is_redis_unavailable_quoting_the_server(reply: str) -> None:
    exc = BaseParser.parse_error(reply)  # what redis-py raises for this reply
    out = _raise_in_redis_errors(exc)
    assert isinstance(out, RedisUnavailable)
    assert reply in str(out)
    code = reply.split(" ")[0]
    assert out.condition == code
    assert is_redis_down(exc) and redis_reason(exc) == reply and redis_condition(exc) == code


def test_a_pipelined_refusal_quotes_the_server_not_the_command() -> None:
    exc = rexc.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    exc.status_code = "OOM"
    exc.args = ("Command # 3 (XADD tp:{binance:0}:raw * data secret) of pipeline caused error: "
                + exc.args[0],)  # fmt: skip
    assert redis_reason(exc) == REFUSALS[0]
    assert "secret" not in str(_raise_in_redis_errors(exc))


def test_a_script_pcall_error_becomes_the_typed_refusal() -> None:
    error = refusal_error(REFUSALS[0])
    assert isinstance(error, rexc.OutOfMemoryError) and is_redis_down(error)
    assert redis_reason(error) == REFUSALS[0]
    assert type(refusal_error("WRONGTYPE Operation against a key")) is rexc.ResponseError


@pytest.mark.parametrize(
    "exc",
    [
        rexc.RedisClusterUnreachableError("no node of the cluster answered"),
        rexc.SlotNotCoveredError("slot 1234 is not covered"),
        rexc.RedisClusterException("Redis Cluster cannot be connected"),
        rexc.ClusterDownError("The cluster is down"),
        rexc.MasterDownError("Link with MASTER is down"),
    ],
)
def test_a_cluster_client_without_its_topology_is_redis_down(exc: BaseException) -> None:
    assert isinstance(exc, REDIS_DOWN) and is_redis_down(exc)
    out = _raise_in_redis_errors(exc)
    assert isinstance(out, RedisUnavailable) and str(exc) in str(out)
    assert redis_condition(exc) in ("CLUSTERDOWN", "MASTERDOWN")


def test_a_lost_connection_is_unreachable() -> None:
    exc = rexc.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    out = _raise_in_redis_errors(exc)
    assert isinstance(out, RedisUnavailable) and out.condition == "UNREACHABLE"
    assert "Connection refused" in str(out)


@pytest.mark.parametrize(
    "reply",
    ["WRONGTYPE Operation against a key holding the wrong kind of value", "ERR syntax error"],
)
def test_a_wrong_command_is_not_back_pressure(reply: str) -> None:
    exc = BaseParser.parse_error(reply)
    assert not is_redis_down(exc)
    assert _raise_in_redis_errors(exc) is exc


def test_a_refused_login_or_acl_rule_is_a_config_error_not_back_pressure() -> None:
    for reply in ("WRONGPASS invalid username-password pair", "NOPERM no permissions"):
        exc = BaseParser.parse_error(reply)
        assert not is_redis_down(exc)
        assert isinstance(_raise_in_redis_errors(exc), ConfigError)


def test_a_person_reads_the_servers_reason_and_no_password() -> None:
    url = "redis://trader:s3cret-pass@127.0.0.1:6379/0"
    oom = _raise_in_redis_errors(BaseParser.parse_error(REFUSALS[0]))
    line = unavailable_line(url, oom)
    assert line == (
        "Redis at redis://trader:***@127.0.0.1:6379/0 refused the command for now: " + REFUSALS[0]
    )
    lost = _raise_in_redis_errors(rexc.ConnectionError("Connection refused."))
    assert unavailable_line(url, lost) == (
        "Redis unreachable at redis://trader:***@127.0.0.1:6379/0: Connection refused."
    )
