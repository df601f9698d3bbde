"""Wait on a condition with a deadline: the one poll loop of the in-process tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

from tests.rawread import frames_of

__all__ = ["until", "wait_for", "xlen_at_least"]


async def until(
    condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "the condition"
) -> Any:
    """Poll ``condition`` (plain or async) until it returns a true value, and return that value.

    Fails naming ``what`` once ``timeout_s`` has passed; never sleeps past a met condition.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


def wait_for(
    condition: Callable[[], object], *, timeout_s: float, what: str, poll_s: float = 0.05
) -> object:
    """:func:`until` for code that is not async (real processes, threaded clients)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


async def xlen_at_least(redis: Any, stream: str, count: int) -> bool:
    """Tell whether ``stream`` holds ``count`` entries or more (a condition for :func:`until`).

    A raw stream's packed entries count once per frame they hold.
    """
    if await redis.xlen(stream) >= count:
        return True
    return len(frames_of(await redis.xrange(stream))) >= count
