"""Read raw streams in tests frame by frame: a packed raw entry holds several frames.

Tests read raw entries through these, never by taking one entry as one frame
(:func:`common.contract.raw_entry_frames`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tickpipe.common.contract import raw_frames_of
from tickpipe.common.schema import RawFrame

__all__ = ["frames_of", "raw_frames", "raw_frames_sync", "raw_len", "raw_len_sync", "rawframes"]


def frames_of(entries: Iterable[tuple[Any, Any]] | None) -> list[tuple[str, dict[Any, Any]]]:
    """One ``(frame id, fields)`` per frame of redis-py stream entries, in order."""
    return raw_frames_of(entries)


def rawframes(entries: Iterable[tuple[Any, Any]] | None) -> list[RawFrame]:
    """The :class:`RawFrame` of every frame of redis-py stream entries, in order."""
    return [RawFrame.from_fields(fields) for _, fields in frames_of(entries)]


async def raw_frames(
    redis: Any, stream: str, start: str = "-", end: str = "+"
) -> list[tuple[str, dict[Any, Any]]]:
    """Every frame of ``stream`` (an async redis-py client) as ``(frame id, fields)``."""
    return frames_of(await redis.xrange(stream, start, end))


def raw_frames_sync(
    redis: Any, stream: str, start: str = "-", end: str = "+"
) -> list[tuple[str, dict[Any, Any]]]:
    """Every frame of ``stream`` (a sync redis-py client) as ``(frame id, fields)``."""
    return frames_of(redis.xrange(stream, start, end))


async def raw_len(redis: Any, stream: str) -> int:
    """How many frames ``stream`` holds (``XLEN`` counts entries)."""
    return len(await raw_frames(redis, stream))


def raw_len_sync(redis: Any, stream: str) -> int:
    """How many frames ``stream`` holds, through a sync client."""
    return len(raw_frames_sync(redis, stream))
