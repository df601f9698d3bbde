"""The clients' event buffer: both slow-consumer policies, close and a fatal error."""

from __future__ import annotations

import asyncio

import pytest

from tickpipe.common.errors import AuthError, ConfigError
from tickpipe.common.schema import Event, Quote
from tickpipe.venues.clients import Dropped, EventBuffer


def quote(n: int) -> Quote:
    return Quote("binance", "BTCUSDT", "1", "1", "2", "1", str(n), n, n)


async def drain(buffer: EventBuffer) -> list[Event]:
    out = []
    while (event := await buffer.get()) is not None:
        out.append(event)
    return out


def test_block_waits_for_room_and_loses_nothing() -> None:
    async def main() -> list[Event]:
        buffer = EventBuffer("binance", max_events=2)
        producer = asyncio.create_task(_produce(buffer, 5))
        got = [await buffer.get() for _ in range(5)]
        await producer
        return [e for e in got if e is not None]

    got = asyncio.run(main())
    assert [e.update_id for e in got if isinstance(e, Quote)] == ["0", "1", "2", "3", "4"]


async def _produce(buffer: EventBuffer, count: int) -> None:
    for n in range(count):
        await buffer.put(quote(n), n)


def test_drop_counts_and_marks_the_hole_where_it_is() -> None:
    async def main() -> tuple[list[str], int]:
        buffer = EventBuffer("binance", max_events=2, policy="drop")
        await _produce(buffer, 5)  # 0 and 1 kept, 2..4 dropped
        got = [await buffer.get(), await buffer.get()]
        await buffer.put(quote(5), 5)
        got += [await buffer.get(), await buffer.get()]
        names = [
            f"Dropped {e.count}" if isinstance(e, Dropped) else f"Quote {e.update_id}"
            for e in got
            if isinstance(e, Dropped | Quote)
        ]
        return names, buffer.dropped

    names, dropped = asyncio.run(main())
    assert names == ["Quote 0", "Quote 1", "Dropped 3", "Quote 5"] and dropped == 3


def test_drop_marker_then_fatal_error_reach_the_consumer_in_order() -> None:
    async def main() -> list[object]:
        buffer = EventBuffer("binance", max_events=2, policy="drop")
        await _produce(buffer, 5)
        buffer.fail(AuthError("key revoked"))
        seen: list[object] = []
        try:
            while (event := await buffer.get()) is not None:
                seen.append(event)
        except AuthError as exc:
            seen.append(exc)
        return seen

    seen = asyncio.run(main())
    assert [type(x).__name__ for x in seen] == ["Quote", "Quote", "Dropped", "AuthError"]
    marker = seen[2]
    assert isinstance(marker, Dropped) and (marker.count, marker.first_ts_recv) == (3, 2)


def test_close_ends_at_once_and_releases_a_blocked_producer() -> None:
    async def main() -> list[Event]:
        buffer = EventBuffer("binance", max_events=1)
        producer = asyncio.create_task(_produce(buffer, 3))
        await asyncio.sleep(0)  # the producer fills the buffer and waits
        assert buffer.close() == 1
        await asyncio.wait_for(producer, 5)
        return await drain(buffer)

    assert asyncio.run(main()) == []


def test_a_bad_policy_or_bound_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        EventBuffer("binance", policy="newest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        EventBuffer("binance", max_events=0)
