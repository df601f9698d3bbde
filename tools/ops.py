"""Carry out the operator's commands: tail a stream, change subscriptions, kill switch, replay.

Each function takes a redis.asyncio client and the settings, writes only what its command is
about, and reports progress on ``out`` (stderr by default) so long work shows it is moving.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson
import redis.asyncio as aioredis

from tickpipe.common.contract import raw_entry_frames, subscription_entry
from tickpipe.common.names import BAR_INTERVALS, Partition
from tickpipe.common.schema import decode_fields, text_of
from tickpipe.common.settings import Settings
from tickpipe.tools.recordings import read_recording, read_recordings
from tickpipe.tools.replay import replay_file

__all__ = [
    "PARTITION_KINDS",
    "VENUE_KINDS",
    "change_subscription",
    "format_entry",
    "read_recording",
    "read_recordings",
    "replay_file",
    "resolve_streams",
    "set_kill_switch",
    "tail",
]

PARTITION_KINDS = (
    "raw", "trades", "quotes", "book", "signals", "control", "dead-letters", "gaps",
    *(f"bars:{i}" for i in BAR_INTERVALS), "venue-bars", "tickers", "partial-depth",
    "trade-corrections", "venue-status",
)  # fmt: skip
VENUE_KINDS = ("orders", "order-updates", "private-raw", "venue-dead-letters", "balances")


def resolve_streams(settings: Settings, name: str) -> list[str]:
    """Turn ``trades`` / ``bars:1m`` / ``orders`` or a full stream name into stream names."""
    keys = settings.keys
    if name.startswith(keys.namespace + ":"):
        return [name]
    venues = settings.all_venues()  # every venue of the deployment
    parts = [p for v in venues for p in settings.for_venue(v).partitions()]
    if name in PARTITION_KINDS:
        if name.startswith("bars:"):
            return [keys.bars(p, name[5:]) for p in parts]
        method = getattr(keys, name.replace("-", "_"))
        return [str(method(p)) for p in parts]
    if name in VENUE_KINDS:
        method = getattr(keys, name.replace("-", "_"))
        return [str(method(v)) for v in venues]
    known = ", ".join((*PARTITION_KINDS, *VENUE_KINDS))
    raise ValueError(f"unknown stream {name!r}: give a full stream name or one of {known}")


def format_entry(stream: str, entry_id: str, fields: dict[str, str]) -> str:
    """One readable line: id, stream, then ``field=value`` pairs (``v`` left out)."""
    body = " ".join(f"{k}={v}" for k, v in fields.items() if k != "v")
    return f"{entry_id} {stream.split('}:', 1)[-1]:<12} {body}"


async def tail(
    redis: aioredis.Redis, streams: list[str], out: TextIO, *, from_start: bool = False,
    count: int | None = None, block_ms: int = 1000, on_ready: Callable[[], object] | None = None,
) -> int:  # fmt: skip
    """Print new entries of ``streams`` as they arrive; stop after ``count`` lines if given.

    A packed raw entry is printed as one line per frame, each with its frame id
    (:func:`common.contract.raw_entry_frames`).

    ``on_ready`` is called once the starting point is fixed: an entry added after it is shown.
    """
    last: dict[Any, Any] = dict.fromkeys(streams, "0-0" if from_start else "$")
    if not from_start:
        for stream in streams:
            newest = await redis.xrevrange(stream, count=1)
            last[stream] = text_of(newest[0][0]) if newest else "0-0"
    if on_ready is not None:
        on_ready()
    shown = 0
    while count is None or shown < count:
        answer: list[Any] = list(await redis.xread(last, block=block_ms, count=500) or [])
        for stream_name, entries in answer:
            stream = text_of(stream_name)
            for entry_id, whole in entries:
                last[stream] = text_of(entry_id)
                for frame_id, fields in raw_entry_frames(entry_id, whole or {}):  # one per frame
                    out.write(format_entry(stream, frame_id, decode_fields(fields)) + "\n")
                    shown += 1
                if count is not None and shown >= count:
                    break
        out.flush()
    return shown


async def change_subscription(
    redis: aioredis.Redis, settings: Settings, action: str, symbols: list[str]
) -> list[str]:
    """Ask the ingestor to ``subscribe``/``unsubscribe`` ``symbols``; return what was written."""
    subscription_entry(action, [])  # a wrong action is a ValueError before anything is written
    by_partition: dict[Partition, list[str]] = {}
    for entry in filter(None, (s.strip() for s in symbols)):
        name, _, symbol = entry.rpartition(":")  # ``venue:SYMBOL``; else the primary venue's
        name = name.lower() or settings.venue
        if name not in settings.all_venues():
            raise ValueError(f"{entry}: {name} is not a venue of this deployment")
        part = settings.partition_of(symbol.upper(), name)
        by_partition.setdefault(part, []).append(symbol.upper())
    try:
        request = importlib.import_module("tickpipe.ingestor.control").request_subscription_change
    except (ImportError, AttributeError):
        request = None
    if request is not None:
        for name in sorted({p.venue for p in by_partition}):
            mine = [s for p, names in by_partition.items() if p.venue == name for s in names]
            await request(redis, settings.for_venue(name), action, mine)
    written = []
    for part, names in sorted(by_partition.items()):
        stream = settings.keys.control(part)
        if request is None:
            await redis.xadd(stream, subscription_entry(action, names))  # type: ignore[arg-type]
        written.append(f"{stream} {action} {','.join(names)}")
    return written


async def set_kill_switch(redis: aioredis.Redis, settings: Settings, state: str) -> bool:
    """Turn every venue's kill switch ``on``/``off`` (``status`` only reads); return whether on.

    With several venues, ``status`` is on when any venue's switch is.
    """
    if state not in ("on", "off", "status"):
        raise ValueError(f"kill switch state must be on, off or status, got {state!r}")
    keys = [settings.keys.kill_switch(v) for v in settings.all_venues()]
    for key in keys:
        if state == "on":
            value = orjson.dumps({"ts": time.time_ns(), "by": "tickpipe kill-switch"})
            await redis.set(key, value)
        elif state == "off":
            await redis.delete(key)
    return bool(await redis.exists(*keys))
