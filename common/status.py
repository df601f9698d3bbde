"""Read the pipeline's state from Redis (streams, consumer groups, health) and render it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.health import read_health
from tickpipe.common.schema import text_of
from tickpipe.common.settings import Settings

__all__ = [
    "GroupInfo",
    "StatusSnapshot",
    "StreamInfo",
    "read_status",
    "read_streams",
    "render_status",
    "render_streams",
]  # fmt: skip


@dataclass
class GroupInfo:
    name: str
    consumers: int
    pending: int
    lag: int | None
    last_delivered: str


@dataclass
class StreamInfo:
    name: str
    length: int
    last_id: str
    groups: list[GroupInfo] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The stream's role: the part after the hash tag, e.g. ``raw`` or ``bars:1m``."""
        return self.name.split("}:", 1)[-1]


@dataclass
class StatusSnapshot:
    streams: list[StreamInfo]
    health: list[dict[str, Any]]
    taken_ns: int

    def total(self, kind: str) -> int:
        return sum(s.length for s in self.streams if s.kind == kind)


async def read_streams(redis: aioredis.Redis, settings: Settings) -> list[StreamInfo]:
    """Every stream of the namespace with its length and consumer groups."""
    out = []
    names = sorted(
        {text_of(k) async for k in redis.scan_iter(match=settings.keys.pattern(), _type="stream")}
    )
    for name in names:
        length = int(await redis.xlen(name))
        last = await redis.xrevrange(name, count=1)
        groups = []
        for g in await redis.xinfo_groups(name):
            g = {text_of(k): v for k, v in g.items()}
            lag = g.get("lag")
            groups.append(
                GroupInfo(
                    name=text_of(g["name"]),
                    consumers=int(g.get("consumers", 0)),
                    pending=int(g.get("pending", 0)),
                    lag=None if lag is None else int(lag),
                    last_delivered=text_of(g.get("last-delivered-id", "")),
                )
            )
        out.append(StreamInfo(name, length, text_of(last[0][0]) if last else "-", groups))
    return out


async def read_status(redis: aioredis.Redis, settings: Settings) -> StatusSnapshot:
    return StatusSnapshot(
        streams=await read_streams(redis, settings),
        health=await read_health(redis, settings.keys),
        taken_ns=time.time_ns(),
    )


def render_streams(streams: list[StreamInfo]) -> list[str]:
    """A table: stream, length, last id, then one row per consumer group."""
    rows = [f"{'stream':<40} {'length':>9} {'group':<10} {'pending':>8} {'lag':>8}  last id"]
    for s in streams:
        if not s.groups:
            rows.append(f"{s.name:<40} {s.length:>9} {'-':<10} {'-':>8} {'-':>8}  {s.last_id}")
        for g in s.groups:
            lag = "?" if g.lag is None else str(g.lag)
            rows.append(
                f"{s.name:<40} {s.length:>9} {g.name:<10} {g.pending:>8} {lag:>8}  {s.last_id}"
            )
    return rows


_SHOWN_STATS = (
    "frames_per_s", "frames", "connections", "reconnects", "queue_depth", "trades", "bars",
    "signals", "dead_letters", "partitions_owned", "orders_sent", "acks", "rejects", "updates",
    "last_order_latency_ms", "archive_entries", "archive_open_entries", "archive_files",
    "archive_write_errors",
)  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_status(snapshot: StatusSnapshot, restarts: dict[str, Any] | None = None) -> list[str]:
    """One line per running stage plus a pipeline summary line."""
    lines = []
    for h in snapshot.health:
        stats = " ".join(f"{k}={_fmt(h[k])}" for k in _SHOWN_STATS if k in h)
        name = f"{h.get('service')}[{h.get('instance')}]"
        lines.append(f"  {name:<34} {h.get('status', '?'):<8} {stats}")
    lag = sum(g.lag or 0 for s in snapshot.streams for g in s.groups)
    pending = sum(g.pending for s in snapshot.streams for g in s.groups)
    summary = (
        f"raw={snapshot.total('raw'):,} trades={snapshot.total('trades'):,} "
        f"bars1s={snapshot.total('bars:1s'):,} bars1m={snapshot.total('bars:1m'):,} "
        f"signals={snapshot.total('signals'):,} orders={snapshot.total('orders'):,} "
        f"dead-letters={snapshot.total('dead-letters'):,} lag={lag:,} pending={pending:,}"
    )
    if restarts:
        restarted = {k: v for k, v in restarts.items() if v}
        if restarted:
            summary += " restarts=" + ",".join(f"{k}:{v}" for k, v in restarted.items())
    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_ns / 1e9))
    return [f"[{stamp}] {summary}", *(lines or ["  (no stage reports health yet)"])]
