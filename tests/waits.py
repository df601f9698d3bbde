"""Wait on a condition with a deadline: the one poll loop of the in-process tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

__all__ = ["until", "xlen_at_least"]


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


async def xlen_at_least(redis: Any, stream: str, count: int) -> bool:
    """Tell whether ``stream`` holds ``count`` entries or more (a condition for :func:`until`)."""
    return bool(await redis.xlen(stream) >= count)
