"""Run a stage in-process for the body of a block: started, then stopped and awaited."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from tickpipe.common.settings import Settings

__all__ = ["stage_running"]


@contextlib.asynccontextmanager
async def stage_running(
    run: Callable[..., Coroutine[Any, Any, Any]],
    settings: Settings,
    *,
    stop_timeout_s: float = 5,
    **kw: Any,
) -> AsyncIterator[asyncio.Task[Any]]:
    """Run ``run(settings, stop, **kw)`` for the block; then set ``stop`` and await its exit.

    The exit is awaited even when the block fails, so a stage never outlives its test.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop, **kw))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, stop_timeout_s)
