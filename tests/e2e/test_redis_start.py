"""The embedded redis-server starts even when the port it chose is taken before it binds it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.ports import free_port
from tickpipe.common import procs
from tickpipe.common.errors import ConfigError

pytestmark = pytest.mark.e2e


def test_a_chosen_port_taken_before_redis_binds_it_is_chosen_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken, free = free_port(), free_port()
    chosen = iter([taken, free])
    monkeypatch.setattr(procs, "free_port", lambda: next(chosen))

    async def scenario() -> str:
        proc, url = await procs.start_redis_server(tmp_path / "redis", appendonly=False)
        try:
            client = aioredis.Redis.from_url(url)
            assert await client.set("k", "v") and await client.get("k") == b"v"
            await client.aclose()
        finally:
            proc.terminate()
            await proc.wait()
        return url

    with socket.socket() as holder:  # another program got there first
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        url = asyncio.run(scenario())
    assert url == f"redis://127.0.0.1:{free}/0"


def test_a_port_the_user_gave_is_not_replaced(tmp_path: Path) -> None:
    taken = free_port()

    async def scenario() -> None:
        await procs.start_redis_server(tmp_path / "redis", port=taken, appendonly=False)

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with pytest.raises(ConfigError, match="exited with code"):
            asyncio.run(scenario())
