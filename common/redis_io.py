"""Connect to Redis and translate redis-py's errors into tickpipe's, at this one boundary."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc

from common.errors import RedisUnavailable

__all__ = ["REDIS_DOWN", "connect_redis", "ensure_group", "redis_errors"]

T = TypeVar("T")

#: redis-py exceptions that mean "Redis is not reachable right now" (retry later).
REDIS_DOWN = (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, OSError)


def connect_redis(url: str) -> aioredis.Redis:
    """Create a client (bytes in, bytes out); the first command opens the connection."""
    return aioredis.Redis.from_url(
        url, decode_responses=False, health_check_interval=10, socket_connect_timeout=5
    )


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Translate a lost Redis connection into :class:`RedisUnavailable`."""
    try:
        yield
    except rexc.BusyLoadingError as exc:
        raise RedisUnavailable(f"Redis is loading its data: {exc}") from exc
    except REDIS_DOWN as exc:
        raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create a consumer group reading from the start of ``stream`` if it does not exist yet."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except rexc.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def call(awaitable: Awaitable[T]) -> T:
    async with redis_errors():
        return await awaitable
