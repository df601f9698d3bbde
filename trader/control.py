"""Turn the trader's kill switch on or off (used by the ``tickpipe`` CLI and tests).

While ``{V}:kill-switch`` exists the trader sends no order and cancels every working one. The
trader reads the key into memory every 0.1 s (:data:`trader.tasks.KILL_SWITCH_EVERY_S`), so a
kill switch set now stops new orders within that period plus one Redis round trip. The key holds
a small readable record of who set it and when.
"""

from __future__ import annotations

import os
import socket
import time

import orjson
import redis.asyncio as aioredis

from tickpipe.common.settings import Settings

__all__ = ["kill_switch_on", "set_kill_switch"]


async def set_kill_switch(redis: aioredis.Redis, settings: Settings, on: bool) -> None:
    """Set (``on``) or clear the kill switch of the configured venue."""
    key = settings.keys.kill_switch(settings.venue)
    if on:
        record = {"ts": time.time_ns(), "by": f"{socket.gethostname()}-{os.getpid()}"}
        await redis.set(key, orjson.dumps(record))
    else:
        await redis.delete(key)


async def kill_switch_on(redis: aioredis.Redis, settings: Settings) -> bool:
    """Return whether the kill switch of the configured venue is on."""
    return bool(await redis.exists(settings.keys.kill_switch(settings.venue)))
