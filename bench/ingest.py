"""Measure ingest throughput against the bare limit, and reconnect time after a dropped venue link.

Both clients read the same blast server (a child process sending pre-encoded trade frames) and
append to a real redis-server in this process's event loop:

* **bare** (the reference): a minimal client on the ingestor's WebSocket client
  (:meth:`ingestor.slot.WsOptions.connect`: picows when installed, else websockets) whose reader
  appends to a deque and whose writer takes everything queued (up to ``batch_max``) and sends
  one pipelined batch of XADDs of the same raw-stream fields, pre-encoded in RESP
  (:func:`ingestor.writer.encode_raw_xadd`), the ingestor's batch policy with nothing else;
* **bare, script writes**: the same client writing each batch as the ingestor does, one call of
  its append script (:func:`ingestor.writer.encode_append`), shown so the share of the gain that
  is the write method, not the ingestor, is visible;
* **ingestor**: :func:`ingestor.shell.run` unchanged.

Throughput is frames / (time all of them are in Redis - time the connection opened); the count
in Redis must equal the frames sent (zero loss).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.rig import Rig, temp_dir, wait_until
from bench.stats import Row, rate, ratio
from tickpipe.common.contract import RAW_FRAMES, raw_entry_frames
from tickpipe.common.redis_link import RedisLink
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Settings
from tickpipe.ingestor.shell import Ingestor
from tickpipe.ingestor.shell import run as run_ingestor
from tickpipe.ingestor.slot import WsOptions
from tickpipe.ingestor.writer import encode_append, encode_raw_xadd

__all__ = [
    "FrameCounter",
    "bare_client",
    "blast_rig",
    "count_frames",
    "count_kind",
    "ingestor_rate",
    "run_ingest",
    "run_reconnect",
    "versus_ingestor",
]

BATCH_MAX = 5000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


async def bare_client(
    url: str,
    redis: aioredis.Redis,
    stream: str,
    *,
    count: int,
    batch_max: int = BATCH_MAX,
    script: bool = False,
) -> int:
    """Read ``count`` frames from ``url`` and XADD them in natural batches; return the open time.

    ``script`` writes each batch as the ingestor does, one call of its append script, instead
    of pipelined XADDs.
    """
    queue: collections.deque[Any] = collections.deque()
    wake = asyncio.Event()
    done = asyncio.Event()

    channel = RedisLink(redis).channel()

    async def writer() -> None:
        written = 0
        while written < count:
            if not queue:
                wake.clear()
                await wake.wait()
            frames = [queue.popleft() for _ in range(min(len(queue), batch_max))]
            if script:
                payload, replies = encode_append(stream, frames), 1
            else:  # pipelined XADDs: one send, one reply per entry
                payload = b"".join([encode_raw_xadd(stream, f) for f in frames])
                replies = len(frames)
            await channel.request(payload, replies)
            await channel.release()
            written += len(frames)
        done.set()

    async with WsOptions().connect(url) as ws:  # the ingestor's client and options
        opened = time.time_ns()
        task = asyncio.create_task(writer())
        seq = 0
        async for message in ws:
            seq += 1
            data = message if isinstance(message, str) else message.decode()
            queue.append(RawFrame("ws", "binance", "bare", seq, time.time_ns(), data, "market"))
            wake.set()
            if seq >= count:
                break
        await task
    return opened


async def count_kind(redis: aioredis.Redis, stream: str, kind: bytes) -> int:
    """Count the frames of ``stream`` whose ``kind`` field is ``kind`` (reads it in chunks)."""
    start, total = "-", 0
    while True:
        chunk: Any = await redis.xrange(stream, start, "+", count=20_000)
        total += sum(
            1
            for entry_id, whole in chunk
            for _, fields in raw_entry_frames(entry_id, whole)
            if fields.get(b"kind") == kind
        )
        if len(chunk) < 20_000:
            return total
        start = "(" + chunk[-1][0].decode()


#: Sum the frames of the raw entries of ``KEYS[1]`` from ``ARGV[1]`` (``-``, or ``(id``: after
#: it), at most ``ARGV[2]`` entries: a packed entry counts its ``frames``, any other one 1.
#: Returns the frames, the entries read and the last entry id read.
_SUM_FRAMES = f"""local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local total, last = 0, ''
for _, entry in ipairs(entries) do
  local fields, n = entry[2], 1
  for j = 1, #fields, 2 do
    if fields[j] == '{RAW_FRAMES}' then n = tonumber(fields[j + 1]) or 1; break end
  end
  total = total + n
  last = entry[1]
end
return {{total, #entries, last}}
"""
_SUM_CHUNK = 10_000


class FrameCounter:
    """Count the frames of a raw stream as it grows (``XLEN`` counts entries, and a packed
    entry holds several frames): each call reads only the entries added since the last one,
    in Redis (:data:`_SUM_FRAMES`), so polling it stays cheap however long the stream gets."""

    def __init__(self, redis: aioredis.Redis, stream: str) -> None:
        self.script = redis.register_script(_SUM_FRAMES)
        self.stream = stream
        self.start = "-"
        self.frames = 0

    async def __call__(self) -> int:
        """Return how many frames the stream has held so far (trimmed ones included)."""
        while True:
            reply: Any = await self.script(keys=[self.stream], args=[self.start, _SUM_CHUNK])
            frames, read, last = int(reply[0]), int(reply[1]), reply[2]
            self.frames += frames
            if read:
                self.start = "(" + (last.decode() if isinstance(last, bytes) else last)
            if read < _SUM_CHUNK:
                return self.frames


async def count_frames(redis: aioredis.Redis, stream: str) -> int:
    """Return how many frames raw ``stream`` holds (every kind; :class:`FrameCounter`)."""
    return await FrameCounter(redis, stream)()


async def _bare_run(
    redis: aioredis.Redis, port: int, count: int, tag: str, *, script: bool = False
) -> float:
    stream = f"bench:{tag}:raw"
    url = f"ws://127.0.0.1:{port}/stream?streams=btcusdt@trade/ethusdt@trade"
    opened = await bare_client(url, redis, stream, count=count, script=script)
    finished = time.time_ns()
    length = await count_frames(redis, stream)  # the script writes pack frames into entries
    if length != count:
        raise RuntimeError(f"bare client lost frames: {length} of {count} in Redis")
    await redis.delete(stream)
    return rate(count, (finished - opened) / 1e9)


async def _ingestor_run(
    redis: aioredis.Redis, rig: Rig, port: int, count: int, ns: str
) -> tuple[float, str]:
    """Return the ingestor's frames/s and, when the count in Redis is off, why."""
    settings = Settings(
        redis_url=rig.redis_url,
        data_dir=str(rig.tmp / "data"),  # its spill journal: the rig's, not the working dir's
        namespace=ns,
        symbols=SYMBOLS,
        binance_ws_url=f"ws://127.0.0.1:{port}",
        binance_rest_url=f"http://127.0.0.1:{port}",
        instance=f"bench-{ns}",
        health_interval_s=1.0,
    )
    stream = settings.keys.raw(next(iter(settings.partitions())))
    stop = asyncio.Event()
    ingestor = Ingestor(settings)
    task = asyncio.create_task(ingestor.run(stop))
    frames_in = FrameCounter(redis, stream)

    async def all_in() -> bool:
        if task.done():
            task.result()
            raise RuntimeError("ingestor stopped early")
        return await frames_in() >= count + 1

    # Every frame and the connect marker; other entries (e.g. REST snapshot markers) may add more.
    await wait_until(all_in, timeout_s=300, what="the ingestor to write every frame")
    finished = time.time_ns()
    length = int(await redis.xlen(stream))
    first: Any = await redis.xrange(stream, count=1)
    opened = int(first[0][1][b"ts_recv"])
    stop.set()
    await task
    frames = await count_kind(redis, stream, b"ws")
    if frames != count:  # a marker may have overtaken the last frames: look once more
        await asyncio.sleep(0.5)
        frames = await count_kind(redis, stream, b"ws")
    await redis.delete(stream)
    problem = ""
    if frames != count:
        s = ingestor.stats
        problem = (
            f"{frames:,} frames of {count:,} ({length:,} entries): reconnects {s.reconnects}, "
            f"stale {s.stale_detected}, rotations {s.rotations}, last error {s.last_error!r}"
        )
    return rate(count, (finished - opened) / 1e9), problem


async def ingestor_rate(redis: aioredis.Redis, rig: Rig, port: int, count: int, ns: str) -> float:
    """Return the ingestor's frames/s on the blast server at ``port``; a count off raises."""
    value, problem = await _ingestor_run(redis, rig, port, count, ns)
    if problem:
        raise RuntimeError(f"ingestor reference run: {problem}")
    return value


@contextlib.asynccontextmanager
async def blast_rig(name: str, count: int) -> AsyncIterator[tuple[Rig, aioredis.Redis, int]]:
    """Start a redis-server and a blast server of ``count`` frames; yield rig, client, port."""
    with temp_dir(f"tp-bench-{name}-") as tmp:
        rig = Rig(tmp)
        try:
            redis = await rig.start_redis()
            port = await rig.start_ready(
                "blast", ["-m", "bench.blast", "--count", str(count)], "port"
            )
            yield rig, redis, port
            await redis.aclose()
        finally:
            await rig.close()


OneRun = Callable[[aioredis.Redis, str, str, Path], Awaitable[tuple[float, int]]]


async def versus_ingestor(name: str, quick: bool, one_run: OneRun, label: str) -> list[Row]:
    """Alternate ``one_run`` with the ingestor's reference run; rows comparing their medians.

    ``one_run(redis, redis_url, tag, tmp)`` measures once and returns its rate and the amount it
    moved; ``label`` names the rate, with ``{amount}`` standing for that amount.
    """
    reps = 1 if quick else 3
    count = 150_000 if quick else 300_000
    values: list[float] = []
    ingests: list[float] = []
    amount = 0
    async with blast_rig(name, count) as (rig, redis, port):
        for n in range(reps):
            value, amount = await one_run(redis, rig.redis_url, str(n), rig.tmp)
            values.append(value)
            ingests.append(await ingestor_rate(redis, rig, port, count, f"{name[0]}i{n}"))
    v, i = statistics.median(values), statistics.median(ingests)
    q = ratio(v, i)
    return [
        Row(name, label.format(amount=f"{amount:,}"), f"{v:,.0f}", f"ingestor {i:,.0f} frames/s"),
        Row(name, f"{name} / ingestor", f"{q:.2f}x", f"median of {reps}", ">= 1.00x", q >= 1.0),
    ]


async def run_ingest(quick: bool) -> list[Row]:
    """Compare the ingestor's sustained frames/s with the bare client's, alternating runs."""
    count = 150_000 if quick else 600_000
    reps = 1 if quick else 3
    bare: list[float] = []
    bare_script: list[float] = []
    real: list[float] = []
    problems: list[str] = []
    async with blast_rig("ingest", count) as (rig, redis, port):
        for n in range(reps):
            bare.append(await _bare_run(redis, port, count, f"b{n}"))
            bare_script.append(await _bare_run(redis, port, count, f"s{n}", script=True))
            value, problem = await _ingestor_run(redis, rig, port, count, f"bi{n}")
            real.append(value)
            problems += [problem] if problem else []
    b, r = statistics.median(bare), statistics.median(real)
    bs = statistics.median(bare_script)
    q, qs = ratio(r, b), ratio(r, bs)
    checked = "zero loss" if not problems else f"count off in {len(problems)} of {reps} runs"
    rows = [
        Row(
            "ingest",
            f"ingestor frames/s ({count:,} frames, {checked})",
            f"{r:,.0f}",
            f"bare client {b:,.0f}",
            ">= 50,000",
            r >= 50_000,
        ),
        Row("ingest", "ingestor / bare", f"{q:.2f}x", f"median of {reps}", ">= 0.80x", q >= 0.8),
        Row(
            "ingest",
            "ingestor / bare with the ingestor's script writes",
            f"{qs:.2f}x",
            f"bare (script writes) {bs:,.0f} frames/s",
            "",
            None,
        ),
    ]
    rows += [
        Row("ingest", "exact count in Redis", "NO", p, "every frame once", False)
        for p in sorted(set(problems))
    ]
    return rows


async def run_reconnect(quick: bool) -> list[Row]:
    """Time from an aborted venue connection to the first frame of the new one, in Redis."""
    del quick
    with temp_dir("tp-bench-reconnect-") as tmp:
        rig = Rig(tmp)
        events = tmp / "blast-events.jsonl"
        try:
            redis = await rig.start_redis()
            port = await rig.start_ready(
                "blast",
                [
                    "-m",
                    "bench.blast",
                    "--count",
                    "20000",
                    "--drop-after",
                    "5000",
                    "--events",
                    str(events),
                ],
                "port",
            )
            settings = Settings(
                redis_url=rig.redis_url,
                namespace="rc",
                symbols=SYMBOLS,
                binance_ws_url=f"ws://127.0.0.1:{port}",
                instance="bench-rc",
            )
            stream = settings.keys.raw(next(iter(settings.partitions())))
            stop = asyncio.Event()
            task = asyncio.create_task(run_ingestor(settings, stop))

            async def second_conn_frame() -> Any:
                if task.done():
                    task.result()
                entries: Any = await redis.xrange(stream)
                conns: list[bytes] = []
                for _, fields in entries:
                    if fields[b"conn"] not in conns:
                        conns.append(fields[b"conn"])
                    if fields[b"kind"] == b"ws" and fields[b"conn"] != conns[0]:
                        return int(fields[b"ts_recv"])
                return None

            first_frame = await wait_until(
                second_conn_frame, timeout_s=60, what="frames on the new connection", every_s=0.05
            )
            stop.set()
            await task
            await redis.aclose()
        finally:
            await rig.close()
        drop_ts = next(
            e["ts"]
            for e in map(orjson.loads, events.read_bytes().splitlines())
            if e["ev"] == "drop"
        )
    gap_s = (first_frame - drop_ts) / 1e9
    return [
        Row(
            "recovery",
            "venue drop -> first frame of new connection in Redis",
            f"{gap_s * 1000:.0f} ms",
            "backoff base 250 ms (jittered)",
            "",
            None,
        ),
    ]
