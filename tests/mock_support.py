"""Helpers for tests that drive the mock exchange in-process: a runner, a manual clock, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from tests.waits import until
from tickpipe.mock_ws import MockExchange, start_mock

Scenario = Callable[[MockExchange], Awaitable[None]]


class ManualClock:
    """The mock's clock (integer ns): it moves only when the test sets ``ns``."""

    def __init__(self, ns: int | None = None) -> None:
        self.ns = time.time_ns() if ns is None else ns

    def __call__(self) -> int:
        return self.ns


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    await until(condition, timeout_s, what)


def run_scenario(scenario: Scenario, *, timeout_s: float, **mock_kw: Any) -> None:
    """Start a mock with ``mock_kw``, run ``scenario`` on it within ``timeout_s``, close it."""

    async def main() -> None:
        mock = await start_mock(**mock_kw)
        try:
            await asyncio.wait_for(scenario(mock), timeout_s)
        finally:
            await mock.close()

    asyncio.run(main())


def apply_levels(book: dict[Decimal, Decimal], levels: list[list[str]]) -> None:
    """Apply depth ``levels`` (``[price, qty]``; qty 0 removes) to ``book`` as a client does."""
    for price, qty in levels:
        if Decimal(qty) == 0:
            book.pop(Decimal(price), None)
        else:
            book[Decimal(price)] = Decimal(qty)
