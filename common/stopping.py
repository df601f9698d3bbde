"""Wait for a stage's stop event, at most so long: the one pause of every retry and idle loop.

``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for`` can swallow a
cancellation that arrives as the event is set, and a stage that is being cancelled must stop.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["wait_stop"]


async def wait_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; return whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()
