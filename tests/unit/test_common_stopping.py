"""wait_stop: the pause of every retry and idle loop ends at stop, and never eats a cancel."""

from __future__ import annotations

import asyncio

import pytest

from tickpipe.common.stopping import wait_stop


def test_it_returns_at_once_when_stop_is_set() -> None:
    async def main() -> bool:
        stop = asyncio.Event()
        stop.set()
        return await wait_stop(stop, 3600)

    assert asyncio.run(main()) is True


def test_it_says_so_when_the_time_ran_out() -> None:
    async def main() -> bool:
        return await wait_stop(asyncio.Event(), 0)

    assert asyncio.run(main()) is False


async def _stopped_while_waiting(*, cancel: bool) -> bool:
    """Wait, then set stop (and cancel the waiting task before it runs again)."""
    stop = asyncio.Event()
    waiting = asyncio.create_task(wait_stop(stop, 3600))
    await asyncio.sleep(0)
    stop.set()  # the event's waiter is woken ...
    if cancel:
        waiting.cancel()  # ... and the task cancelled before it runs again
    return await waiting


def test_setting_stop_ends_the_wait() -> None:
    assert asyncio.run(_stopped_while_waiting(cancel=False)) is True


def test_a_cancel_that_comes_as_stop_is_set_still_cancels() -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_stopped_while_waiting(cancel=True))
