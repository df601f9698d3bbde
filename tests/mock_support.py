"""Helpers for tests that drive the mock exchange in-process: a manual clock and waits."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.waits import until


class ManualClock:
    """The mock's clock (integer ns): it moves only when the test sets ``ns``."""

    def __init__(self, ns: int | None = None) -> None:
        self.ns = time.time_ns() if ns is None else ns

    def __call__(self) -> int:
        return self.ns


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    await until(condition, timeout_s, what)
