"""The processor's fenced Lua commit and read-ahead pipe against fakeredis (Lua via lupa)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import fakeredis
import orjson
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc

from tests.integration.test_common_redis_link import NoScripts
from tests.integration.test_processor_shell import (
    P,
    assert_all_processed,
    make_settings,
    processing,
    real_frames,
    write_raw,
)
from tests.waits import until
from tickpipe.common.names import GROUP_PROCESSOR
from tickpipe.common.redis_link import RedisLost
from tickpipe.common.schema import RawFrame, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.processor import link as link_module
from tickpipe.processor.lanes import Commit, PartitionLane
from tickpipe.processor.link import LeaseLost, Link

ODD = 'quote " backslash \\ newline \n nul \x00 tab \t unicode é 日本 𝄞 \u2028'


async def _read_stream(redis: Any, key: str) -> list[dict[str, str]]:
    return [decode_fields(fields) for _, fields in await redis.xrange(key)]


async def _prepared(redis: Any, settings: Settings, frames: int) -> tuple[PartitionLane, Link]:
    """Raw entries in the stream, the group created, the lease held by ``settings.instance``."""
    await write_raw(redis, settings, real_frames()[:frames])
    await redis.xgroup_create(settings.keys.raw(P), GROUP_PROCESSOR, id="0")
    await redis.set(settings.keys.lease(P), settings.instance, px=5000)
    return PartitionLane(settings, P), Link(redis, settings.instance, 5000)


async def _read_batch(link: Link, lane: PartitionLane) -> Any:
    async with link.pipe(lane) as pipe:
        await pipe.send_read(">", 1000)
        entries, confirmed = await pipe.collect()
    assert confirmed == []
    return entries


def _with_odd_output(commit: Commit, lane: PartitionLane) -> Commit:
    """Add a dead letter whose text needs JSON escapes and multi-byte UTF-8."""
    extra = (lane.dead_letter_key, {"reason": ODD, "entry_id": "1-1", "data": ODD[::-1]})
    return dataclasses.replace(commit, outputs=[*commit.outputs, extra])


@pytest.mark.parametrize("direct", [True, False])
def test_commit_writes_outputs_checkpoint_acks_and_renews_the_lease(direct: bool) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        lane, _ = await _prepared(redis, settings, 400)
        link = Link(redis, settings.instance, 60_000, direct=direct)
        assert link.direct is direct
        entries = await _read_batch(link, lane)
        assert len(entries) == 400
        commit = _with_odd_output(lane.process(entries, 42), lane)
        assert len({key for key, _ in commit.outputs}) > 3
        await redis.pexpire(settings.keys.lease(P), 1000)
        async with link.pipe(lane) as pipe:
            await pipe.send_commit(commit, 1.5)
            _, confirmed = await pipe.collect()
        assert confirmed == [(commit, 1.5)]
        written: dict[str, list[dict[str, str]]] = {}
        for key, _ in commit.outputs:
            written[key] = await _read_stream(redis, key)
        expected: dict[str, list[dict[str, str]]] = {}
        for key, fields in commit.outputs:
            expected.setdefault(key, []).append(fields)
        assert written == expected  # every field, value and order exactly as to_fields gave them
        assert list(written[lane.trades_key][0])[:3] == ["v", "venue", "symbol"]
        assert await redis.get(settings.keys.checkpoint(P)) == commit.checkpoint
        pending = await redis.xpending(settings.keys.raw(P), GROUP_PROCESSOR)
        assert pending["pending"] == 0
        assert await redis.pttl(settings.keys.lease(P)) > 10_000  # renewed: it had 1 s left

    asyncio.run(scenario())


@pytest.mark.parametrize("direct", [True, False])
def test_commit_with_a_lease_held_by_another_member_writes_nothing(direct: bool) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        keys = settings.keys
        lane, _ = await _prepared(redis, settings, 200)
        link = Link(redis, settings.instance, 5000, direct=direct)
        entries = await _read_batch(link, lane)
        commit = lane.process(entries, 42)
        await redis.set(keys.checkpoint(P), b"earlier")
        for holder in ("m2", None):  # taken over by another member, or expired
            if holder is None:
                await redis.delete(keys.lease(P))
            else:
                await redis.set(keys.lease(P), holder, px=3000)
            with pytest.raises(LeaseLost):
                async with link.pipe(lane) as pipe:
                    await pipe.send_commit(commit, 0.0)
                    await pipe.collect()
            for key in {key for key, _ in commit.outputs}:
                assert await redis.xlen(key) == 0
            assert await redis.get(keys.checkpoint(P)) == b"earlier"
            pending = await redis.xpending(keys.raw(P), GROUP_PROCESSOR)
            assert pending["pending"] == 200
        assert await redis.get(keys.lease(P)) is None  # not renewed either

    asyncio.run(scenario())


def test_a_refused_eval_falls_back_to_the_watched_transaction() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        lane, link = await _prepared(redis, settings, 100)
        entries = await _read_batch(link, lane)
        commit = lane.process(entries, 42)
        async with link.pipe(lane) as pipe:
            # What a server whose ACL lacks +eval answers.
            await pipe._settle(commit, rexc.NoPermissionError("NOPERM no permission to run eval"))
        assert link.seam.scripted is False
        assert await redis.xlen(lane.trades_key) == len(
            [key for key, _ in commit.outputs if key == lane.trades_key]
        )
        assert await redis.get(settings.keys.checkpoint(P)) == commit.checkpoint
        # From now on commits go through WATCH/MULTI, still fenced.
        await redis.set(settings.keys.lease(P), "m2")
        with pytest.raises(LeaseLost):
            async with link.pipe(lane) as pipe:
                await pipe.send_commit(commit, 0.0)

    asyncio.run(scenario())


def _entry_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def test_a_read_then_a_commit_on_one_pipe_come_back_in_order() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        lane, link = await _prepared(redis, settings, 300)
        async with link.pipe(lane) as pipe:
            await pipe.send_read(">", 100)
            first, _ = await pipe.collect()
            assert first is not None and len(first) == 100
            await pipe.send_read(">", 100)  # read ahead while the first is processed
            commit = lane.process(first, 42)
            second, _ = await pipe.collect()
            await pipe.send_commit(commit, 2.0)
            await pipe.send_read(first[-1][0], 1000)  # pending after the first batch
            pending, confirmed = await pipe.collect()
        assert confirmed == [(commit, 2.0)]
        assert second is not None and [e for e, _ in second] == [e for e, _ in pending or []]
        assert _entry_id(second[0][0]) > _entry_id(first[-1][0])

    asyncio.run(scenario())


def _outputs_of(
    direct: bool, scripted: bool, monkeypatch: pytest.MonkeyPatch, *, refusing: bool = False
) -> dict[str, Any]:
    """Run the shell over the same raw stream; return every output stream and the checkpoint.

    ``refusing`` runs it on a client whose ACL refuses scripts (instead of telling the seam).
    """
    original = link_module.Link.__init__

    def init(self: Link, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not refusing:
            self.seam.scripted = scripted

    monkeypatch.setattr(link_module.Link, "__init__", init)

    async def scenario() -> dict[str, Any]:
        redis = NoScripts() if refusing else fakeredis.FakeAsyncRedis()
        settings = make_settings(batch_size=70)
        keys = settings.keys
        fields = [f.to_fields() for f in real_frames()]
        fields += [RawFrame("ws", "binance", "c1", 1, 1, "garbage").to_fields(), {"only": "junk"}]
        for n, entry in enumerate(fields, start=1):  # the same entry ids in every run
            await redis.xadd(keys.raw(P), entry, id=f"{1_700_000_000_000 + n // 3}-{n % 3}")
        async with processing(settings, redis, direct=direct):
            await until(lambda: _drained(redis, settings))
            health: dict[str, Any] = {}

            async def reported() -> bool:
                raw = await redis.get(keys.health("processor", settings.instance))
                health.update(orjson.loads(raw) if raw else {})
                return "scripts_refused" in health and health.get("frames", 0) > 0

            await until(reported)
        await assert_all_processed(redis, settings)
        streams = [keys.trades(P), keys.signals(P), keys.bars(P, "1s"), keys.bars(P, "1m")]
        streams += [keys.dead_letters(P), keys.book(P), keys.control(P), keys.gaps(P)]
        out: dict[str, Any] = {s: await _read_stream(redis, s) for s in streams}
        out["checkpoint"] = await redis.get(keys.checkpoint(P))
        if refusing:
            out["scripts_refused"] = health["scripts_refused"]
        return out

    try:
        return asyncio.run(scenario())
    finally:
        monkeypatch.setattr(link_module.Link, "__init__", original)


def test_script_pipe_and_transaction_paths_write_identical_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = _outputs_of(direct=False, scripted=False, monkeypatch=monkeypatch)
    assert reference[make_settings().keys.trades(P)]
    for direct, scripted in ((True, True), (False, True), (True, False)):
        assert _outputs_of(direct, scripted, monkeypatch) == reference, (direct, scripted)
    refused = _outputs_of(False, True, monkeypatch, refusing=True)
    assert refused.pop("scripts_refused") == 1  # noted once, in the health record
    assert refused == reference


def test_a_partition_lane_gives_its_connection_back_to_the_pool() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        settings = make_settings()
        await write_raw(redis, settings, real_frames()[:300])
        async with processing(settings, redis):
            await until(lambda: _drained(redis, settings))
        assert not redis.connection_pool._in_use_connections

    asyncio.run(scenario())


async def _drained(redis: Any, settings: Settings) -> bool:
    raw = settings.keys.raw(P)
    groups = await redis.xinfo_groups(raw) if await redis.exists(raw) else []
    if not groups or groups[0]["pending"]:
        return False
    newest = await redis.xrevrange(raw, count=1)
    return bool(newest) and groups[0]["last-delivered-id"] == newest[0][0]


def test_through_redis_py_a_refused_script_reads_and_commits_by_transaction() -> None:
    """The redis-py path (a cluster client): the seam's refusal moves both to WATCH/MULTI."""

    async def scenario() -> None:
        redis = NoScripts()
        settings = make_settings()
        lane, _ = await _prepared(redis, settings, 150)
        link = Link(redis, settings.instance, 5000, direct=False)
        entries = await _read_batch(link, lane)
        assert len(entries) == 150 and link.seam.scripts_refused == 1
        commit = lane.process(entries, 42)
        async with link.pipe(lane) as pipe:
            await pipe.send_commit(commit, 0.0)
            _, confirmed = await pipe.collect()
        assert confirmed == [(commit, 0.0)] and link.seam.scripts_refused == 1
        expected: dict[str, list[dict[str, str]]] = {}
        for key, fields in commit.outputs:
            expected.setdefault(key, []).append(fields)
        for key, rows in expected.items():
            assert await _read_stream(redis, key) == rows
        assert await redis.get(settings.keys.checkpoint(P)) == commit.checkpoint
        assert (await redis.xpending(settings.keys.raw(P), GROUP_PROCESSOR))["pending"] == 0

    asyncio.run(scenario())


def test_a_read_redis_never_answers_is_lost_within_the_socket_timeout() -> None:
    """The six replies of a fenced read share one deadline: past it, Redis is lost (and the
    connection dropped), as when each reply had its own."""

    async def scenario() -> None:
        heard: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            silent = False
            try:
                while data := await reader.read(65536):
                    heard.append(data)
                    silent = silent or b"WATCH" in data  # the fenced read: never answered
                    if not silent:  # the client's set-up commands: answer each
                        commands = len(re.findall(rb"(?:^|\r\n)\*\d+\r\n", data))
                        writer.write(b"+OK\r\n" * commands)
                        await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        redis = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=0.3, protocol=2)
        link = Link(redis, "m1", 5000)
        lane = PartitionLane(make_settings(), P)
        try:
            async with link.pipe(lane) as pipe:
                await pipe.send_read(">", 10)
                began = asyncio.get_running_loop().time()
                with pytest.raises(RedisLost):
                    await pipe.collect()
                assert asyncio.get_running_loop().time() - began >= 0.3
                assert pipe._channel is not None and not pipe._channel.held
            assert any(b"WATCH" in data for data in heard)
        finally:
            await redis.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
