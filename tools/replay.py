"""Write recorded frames into the ``raw`` streams as the ingestor would: ``tickpipe replay``.

Every frame a recording holds is written, in order, as a raw entry of its symbol's partition:
WebSocket frames as ``ws``, REST depth answers as ``rest``/``depth_snapshot`` (wrapped as the
ingestor wraps them, ``{"symbol", "request", "reason", "response"}``), and the entries of a
``tickpipe export raw`` file with their own kind and channel. The routing
(:class:`tools.raw_route.RawRouter`) is shared with ``tickpipe backtest``: a frame of no symbol
(a subscription reply) goes to the partition of the frame before it, each partition starts
with a ``connect`` marker of the replay's connection id, sequence numbers count per partition.

Writes are pre-encoded XADDs (:func:`common.raw_resp.encode_raw_xadd`: the bytes
:meth:`RawFrame.to_fields` gives) sent as one pipelined batch on one redis-py connection; the next
batch is encoded while Redis works on the previous one. ``speed`` paces by recorded receive time:
0 is as fast as possible, 1 the recorded speed, N N times faster; a recorded
silence over a minute is skipped (and said). Progress goes to ``out`` every
``progress_s`` seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import redis.asyncio as aioredis

from tickpipe.common.raw_resp import encode_raw_xadd
from tickpipe.common.redis_link import RedisLink
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.tools.raw_route import LEFT_OUT, RawRouter
from tickpipe.tools.recordings import Recorded

__all__ = ["ReplayStats", "encode_raw", "replay_file"]


@dataclass
class ReplayStats:
    """What a replay wrote: frames by kind, partitions, and frames routed without a symbol."""

    frames: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    partitions: int = 0
    no_symbol: int = 0
    seconds: float = 0.0
    recorded_ns: int = 0

    def rate(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{n:,} {k}" for k, n in sorted(self.by_kind.items()))
        line = (
            f"replayed {self.frames:,} frames ({kinds or 'none'}) into {self.partitions} "
            f"partition(s) in {self.seconds:.1f} s ({self.rate():,.0f}/s; "
            f"{self.recorded_ns / 1e9:,.1f} s recorded)"
        )
        if self.no_symbol:
            line += f"; {self.no_symbol:,} frames of no symbol went with the frame before them"
        return line


#: When pacing, a stretch of the recording this long without a frame is not waited through
#: (two captures a day apart, say).
MAX_SILENCE_NS = 60_000_000_000

#: How long Redis may take to answer one batch before the replay gives up.
REPLY_TIMEOUT_S = 60.0


def encode_raw(
    stream: str, kind: str, venue: str, conn: str, channel: str, seq: int, ts: int, data: str
) -> bytes:
    """``XADD stream * <RawFrame fields>`` in RESP (:func:`common.raw_resp.encode_raw_xadd`)."""
    return encode_raw_xadd(stream, RawFrame(kind, venue, conn, seq, ts, data, channel))


def _progress(stats: ReplayStats, done: float | None) -> str:
    where = ""
    if done:
        left = stats.seconds * (1 - done) / done
        where = f"{done:.1%} of the input, about {left:,.0f} s left, "
    return (
        f"replayed {stats.frames:,} frames ({where}{stats.rate():,.0f}/s, "
        f"{stats.recorded_ns / 1e9:,.1f} s recorded)"
    )


class _Sender:
    """One pipelined batch in flight on one held connection of the Redis seam."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.channel = RedisLink(redis, role="replay").channel()
        self.inflight = 0

    async def send(self, payload: list[bytes], count: int) -> None:
        await self.wait()
        await self.channel.send(payload)
        self.inflight = count

    async def wait(self) -> None:
        """Read the replies of the batch in flight; an error reply raises (after all are read)."""
        count, self.inflight = self.inflight, 0
        if not count:
            return
        # one deadline for the whole batch, not a timer per reply
        replies = await self.channel.replies(count, timeout_s=REPLY_TIMEOUT_S)
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None:
            raise error

    async def drop(self) -> None:
        self.inflight = 0
        await self.channel.discard()

    async def close(self) -> None:
        try:
            await self.wait()
        finally:
            await self.channel.release()


async def replay_file(
    redis: aioredis.Redis, settings: Settings, records: Iterable[Recorded | tuple[int, str]], *,
    conn: str, out: TextIO | None = None, limit: int | None = None, batch: int = 2000,
    speed: float = 0.0, progress_s: float = 2.0,
    fraction: Callable[[], float | None] | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> ReplayStats:  # fmt: skip
    """Write ``records`` into their partitions' ``raw`` streams; return what was written.

    ``records`` are :class:`Recorded` (or bare ``(ts, frame)`` WebSocket frames). ``limit``
    stops after that many frames; ``clock`` (ns) and ``sleep`` pace and time the replay;
    ``fraction`` (0..1, e.g. ``RecordingStats.fraction``) adds how far the input is read, and
    the time left, to the progress lines.
    """
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    out = out or sys.stderr
    stats = ReplayStats()
    router = RawRouter(settings, conn)
    pending: list[bytes] = []
    sender = _Sender(redis)
    started = clock()
    next_report = started + int(progress_s * 1e9)
    first_ts: int | None = None
    prev_ts: int | None = None
    cut_ns = 0  # recorded silences left out of the pacing

    async def flush() -> None:
        if pending:
            payload = list(pending)  # one command per chunk: one socket write of them all
            pending.clear()
            await sender.send(payload, len(payload))

    try:
        for rec in records:
            if limit is not None and stats.frames >= limit:
                break
            entries, kind = router.route(rec)
            pending += [encode_raw_xadd(stream, frame) for stream, frame in entries]
            if kind == LEFT_OUT:
                stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
                continue
            ts = entries[-1][1].ts_recv
            stats.frames += 1
            stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
            first_ts = ts if first_ts is None else first_ts
            stats.recorded_ns = ts - first_ts
            if speed > 0:
                if prev_ts is not None and ts - prev_ts > MAX_SILENCE_NS:
                    cut_ns += ts - prev_ts
                    out.write(f"replay: skipping {(ts - prev_ts) / 1e9:,.0f} s of recorded "
                              "silence (no frame) instead of waiting through it\n")  # fmt: skip
                prev_ts = ts
                due = started + int((stats.recorded_ns - cut_ns) / speed)
                now = clock()
                if due > now:
                    await flush()
                    await sender.wait()
                    await sleep((due - now) / 1e9)
            if len(pending) >= batch:
                await flush()
            if clock() >= next_report:
                next_report = clock() + int(progress_s * 1e9)
                stats.seconds = (clock() - started) / 1e9
                out.write(_progress(stats, fraction() if fraction else None) + "\n")
                out.flush()
        await flush()
        await sender.close()
    finally:
        if sender.channel.held:
            await sender.drop()
    stats.partitions = len(router.seqs)
    stats.no_symbol = router.no_symbol
    stats.seconds = (clock() - started) / 1e9
    out.write(stats.summary() + "\n")
    out.flush()
    return stats
