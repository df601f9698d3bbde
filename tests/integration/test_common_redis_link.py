"""The direct-Redis seam against fakeredis: pre-encoded commands, replies, scripts, fallbacks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import fakeredis
import pytest
import redis.exceptions as rexc

from common.errors import RedisUnavailable
from common.redis_link import Contended, RedisLink, RedisLost, Script, ScriptsRefused
from common.resp import encode_command

ECHO = Script("return {KEYS[1], ARGV[1]}")


class NoScripts(fakeredis.FakeAsyncRedis):
    """A fakeredis client whose ACL (pretend) refuses scripts."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVAL", "EVALSHA"):
            raise rexc.NoPermissionError("User p has no permissions to run the 'evalsha' command")
        return await super().execute_command(*args, **options)


def test_a_channel_sends_pre_encoded_commands_and_reads_replies_in_order() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        link = RedisLink(redis)
        assert link.direct
        channel = link.channel()
        payload = b"".join(
            [
                encode_command(["SET", "k", "1"]),
                encode_command(["INCR", "k"]),
                encode_command(["XADD", "k", "*", "f", "v"]),  # WRONGTYPE: an answer, not a loss
                encode_command(["GET", "k"]),
            ]
        )
        replies = await channel.request(payload, 4)
        assert replies[:2] == [b"OK", 2]
        assert isinstance(replies[2], rexc.ResponseError) and "WRONGTYPE" in str(replies[2])
        assert replies[3] == b"2"
        await channel.release()
        assert not channel.held
        assert await redis.get("k") == b"2"  # the connection went back clean

    asyncio.run(scenario())


def test_scripts_run_by_sha_and_are_cached_again_after_a_flush() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        for link in (RedisLink(redis), RedisLink(redis, direct=False)):
            await redis.script_flush()
            got = await link.call_script(ECHO, ["key"], ["arg"], doing="echoing")
            assert got == [b"key", b"arg"]
            assert await redis.script_exists(ECHO.sha) == [True]
            assert await link.call_script(ECHO, ["k2"], ["a2"], doing="echoing") == [b"k2", b"a2"]
            await link.close()

    asyncio.run(scenario())


def test_meanwhile_runs_once_while_the_script_is_answered() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        calls: list[int] = []
        for link in (RedisLink(redis), RedisLink(redis, direct=False)):
            await link.call_script(ECHO, ["k"], ["a"], doing="x", meanwhile=lambda: calls.append(1))
            await link.close()
        assert calls == [1, 1]

    asyncio.run(scenario())


@pytest.mark.parametrize("direct", [True, False])
def test_a_refused_script_switches_the_link_to_transactions_once(
    direct: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        redis = NoScripts()
        await redis.script_flush()  # EVALSHA answers NOSCRIPT on the direct path; EVAL is refused
        link = RedisLink(redis, direct=direct, role="processor")
        with pytest.raises(ScriptsRefused):
            await link.call_script(ECHO, ["k"], ["a"], doing="committing")
        assert not link.scripted and link.scripts_refused == 1
        with pytest.raises(ScriptsRefused):  # decided: nothing is sent any more
            await link.call_script(ECHO, ["k"], ["a"], doing="committing")
        assert link.scripts_refused == 1
        async with link.watch("k") as pipe:  # the fallback the callers take
            assert await pipe.get("k") is None
            pipe.multi()
            pipe.set("k", "v")
            await pipe.execute()
        assert await redis.get("k") == b"v"

    with caplog.at_level(logging.WARNING, logger="tickpipe.redis"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if "refused a script" in r.getMessage()]
    assert len(warnings) == 1 and "committing" in warnings[0].getMessage()


def test_a_watched_key_changed_before_exec_is_contended_and_writes_nothing() -> None:
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        redis = fakeredis.FakeAsyncRedis(server=server)
        other = fakeredis.FakeAsyncRedis(server=server)
        link = RedisLink(redis)
        with pytest.raises(Contended):
            async with link.watch("lease") as pipe:
                await pipe.get("lease")
                await other.set("lease", "someone else")
                pipe.multi()
                pipe.set("written", "1")
                await pipe.execute()
        assert await redis.get("written") is None

    asyncio.run(scenario())


def test_a_lost_connection_is_discarded_and_raised_as_redis_unavailable() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        channel = RedisLink(redis).channel()
        await channel.open()
        assert channel.reconnects == 0
        conn: Any = channel._conn

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise rexc.ConnectionError("Connection reset by peer")

        conn.read_response = broken
        with pytest.raises(RedisLost) as caught:
            await channel.request(encode_command(["PING"]))
        assert isinstance(caught.value, RedisUnavailable)
        assert isinstance(caught.value, ConnectionError)  # the stages' REDIS_DOWN handlers
        assert not channel.held
        del conn.read_response
        assert await channel.request(encode_command(["PING"])) == [b"PONG"]
        assert channel.reconnects >= 1  # the writer's sign to check what Redis kept
        await channel.release()

    asyncio.run(scenario())


def test_a_cluster_like_client_has_no_direct_path() -> None:
    link = RedisLink(object())  # type: ignore[arg-type]
    assert not link.direct
    with pytest.raises(ValueError):
        link.channel()
