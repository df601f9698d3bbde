"""Hold one mock WebSocket connection and drain its outbox, applying frame faults on the way.

Each outbox item is ``(text, record, tag)``: the frame, the ground-truth record written once it
is sent, and a tag naming what the frame carries (a stream name, ``"user"`` for user-data
events, ``None`` for answers to requests). Frame faults (stall, delay, duplicate, reorder,
malformed) apply only to tagged frames, so requests are always answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mock_ws.binance.blast import BlastEncoder
from mock_ws.binance.streams import StreamSession
from mock_ws.binance.ws_api import ApiSession
from mock_ws.faults import FaultPlan, padded, restyle
from mock_ws.ground_truth import GroundTruthWriter

__all__ = [
    "OUTBOX_LIMIT",
    "Connection",
    "Record",
    "blast_loop",
    "close",
    "offer",
    "over_limit",
    "ping_loop",
    "write_loop",
]

log = logging.getLogger("tickpipe.mock_ws")

OUTBOX_LIMIT = 10_000
REORDER_WAIT_S = 1.0
#: What a fault's ``stream`` filter is compared with for an answer (none names it: any matches).
ANSWER_TAG = "answer"
Record = dict[str, Any] | None
_Item = tuple[str, Record, str | None]


@dataclass
class Connection:
    """One client connection: its socket, session state and outbox."""

    conn_id: int
    kind: str  # "stream" or "api"
    path: str
    ws: web.WebSocketResponse
    connected_ns: int
    transport: asyncio.Transport | None = None
    stream: StreamSession | None = None
    api: ApiSession | None = None
    micro: bool = False  # timeUnit=MICROSECOND
    listen_key: str | None = None  # a legacy /ws/<listenKey> user-data stream
    blasting: frozenset[str] = frozenset()  # trade streams that come from blast_loop
    outbox: asyncio.Queue[_Item] = field(default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT))
    last_pong_ns: int = 0
    msg_second: int = -1  # incoming-message limit window
    msg_count: int = 0
    overflowed: bool = False
    closing: bool = False


def offer(
    conn: Connection,
    text: str,
    record: Record,
    tag: str | None,
    background: set[asyncio.Task[Any]],
) -> None:
    """Queue a frame; a connection whose outbox is full is closed as too slow (1008)."""
    try:
        conn.outbox.put_nowait((text, record, tag))
    except asyncio.QueueFull:
        if not conn.overflowed:
            conn.overflowed = True
            log.warning("client too slow, disconnecting", extra={"conn": conn.conn_id})
            close(conn, 1008, "client too slow", background)


def close(conn: Connection, code: int, message: str, background: set[asyncio.Task[Any]]) -> None:
    """Start closing ``conn`` with ``code`` in a background task (once)."""
    if conn.closing:
        return
    conn.closing = True
    task = asyncio.create_task(conn.ws.close(code=code, message=message.encode()))
    background.add(task)
    task.add_done_callback(background.discard)


async def ping_loop(
    conn: Connection,
    interval_s: float,
    clock: Callable[[], int],
    background: set[asyncio.Task[Any]],
) -> None:
    """Ping every ``interval_s``; close (1008) a connection silent for three intervals."""
    timeout_ns = int(interval_s * 3 * 1e9)
    while True:
        await asyncio.sleep(interval_s)
        now_ns = clock()
        if now_ns - conn.last_pong_ns > timeout_ns:
            log.info("no pong in time, disconnecting", extra={"conn": conn.conn_id})
            close(conn, 1008, "pong timeout", background)
            return
        await conn.ws.ping(str(now_ns // 1_000_000).encode())


BLAST_CHUNK = 512
BLAST_BUFFER = 1 << 20


async def blast_loop(
    conn: Connection,
    encoders: list[BlastEncoder],
    rate: float,
    clock: Callable[[], int],
    truth: GroundTruthWriter,
) -> None:
    """Write pre-encoded trade frames straight to the socket until it closes or is cancelled.

    ``rate`` 0 sends as fast as the client reads (bounded by a 1 MiB socket buffer).
    """
    transport = conn.transport
    started_ns = clock()
    sent = 0
    try:
        while transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size() > BLAST_BUFFER:
                await asyncio.sleep(0.0005)
                continue
            count = BLAST_CHUNK
            if rate > 0:
                due = int(rate * (clock() - started_ns) / 1e9) - sent
                if due <= 0:
                    await asyncio.sleep(0.001)
                    continue
                count = min(count, due)
            now_ms = clock() // 1_000_000
            for encoder in encoders:
                transport.write(encoder.chunk(count, now_ms))
            sent += count
            await asyncio.sleep(0)
    finally:
        elapsed = max(1, clock() - started_ns)
        truth.write(
            "blast",
            conn=conn.conn_id,
            frames=sent * len(encoders),
            last_ids=[e.next_id - 1 for e in encoders],
            frames_per_s=round(sent * len(encoders) / elapsed * 1e9),
        )


def over_limit(conn: Connection, now_ns: int, limit: int | None) -> bool:
    """Count an incoming frame; tell whether the per-second limit (Binance: 5) is broken."""
    second = now_ns // 1_000_000_000
    if second != conn.msg_second:
        conn.msg_second, conn.msg_count = second, 0
    conn.msg_count += 1
    return limit is not None and conn.msg_count > limit


class _Sender:
    def __init__(
        self, conn: Connection, truth: GroundTruthWriter, clock: Callable[[], int]
    ) -> None:
        self.conn = conn
        self.truth = truth
        self.clock = clock
        self.sent = 0

    async def send(self, text: str, record: Record) -> None:
        await self.conn.ws.send_str(text)
        self.sent += 1
        if record is not None:
            fields = {k: v for k, v in record.items() if k != "ev"}
            self.truth.write(record["ev"], ts=self.clock(), **fields)


async def write_loop(
    conn: Connection,
    plan: FaultPlan,
    truth: GroundTruthWriter,
    clock: Callable[[], int],
    on_sent: Callable[[int], None],
) -> None:
    """Send queued frames until cancelled, applying the plan's frame faults."""
    sender = _Sender(conn, truth, clock)
    held: tuple[str, Record] | None = None
    while True:
        if held is None:
            text, record, tag = await conn.outbox.get()
        else:
            try:
                text, record, tag = await asyncio.wait_for(conn.outbox.get(), REORDER_WAIT_S)
            except TimeoutError:
                await sender.send(*held)
                held = None
                continue
        before = sender.sent
        if tag is None:  # an answer to a request
            if plan.faults and conn.kind == "api":
                await _delay_answer(sender, plan)
            await sender.send(text, record)
        elif plan.faults:
            held = await _faulty_send(sender, plan, text, record, tag, held)
        else:
            await sender.send(text, record)
            if held is not None:
                await sender.send(*held)
                held = None
        on_sent(sender.sent - before)


async def _delay_answer(sender: _Sender, plan: FaultPlan) -> None:
    """Hold a WS-API answer for a ``delay`` fault that names ``kind: "api"`` (a slow venue)."""
    conn = sender.conn
    for fault in plan.frame_faults(conn.path, conn.kind, ANSWER_TAG, sender.clock()):
        if fault.type == "delay" and fault.spec.get("kind") == "api":
            fault.hits += 1
            await asyncio.sleep(plan.jitter_s(fault))
            return


async def _faulty_send(
    sender: _Sender,
    plan: FaultPlan,
    text: str,
    record: Record,
    tag: str,
    held: tuple[str, Record] | None,
) -> tuple[str, Record] | None:
    conn = sender.conn
    faults = plan.frame_faults(conn.path, conn.kind, tag, sender.clock())
    by_type = {f.type: f for f in reversed(faults)}
    if "stall" in by_type:
        by_type["stall"].hits += 1
        return held
    delay = by_type.get("delay")
    if delay is not None:
        delay.hits += 1
        await asyncio.sleep(plan.jitter_s(delay))
    layout = by_type.get("reformat")
    if layout is not None:
        plan.take(layout)
        text = restyle(text, str(layout.spec["style"]))
    big = by_type.get("oversized")
    if big is not None:
        plan.take(big)
        text = padded(text, int(big.spec["bytes"]))
    bad = by_type.get("malformed")
    if bad is not None:
        plan.take(bad)
        await sender.send(text[: max(1, len(text) // 2)], None)
        if bad.spec.get("replace"):
            return held
    swap = by_type.get("reorder")
    if swap is not None and held is None:
        plan.take(swap)
        return (text, record)
    await sender.send(text, record)
    dup = by_type.get("duplicate")
    if dup is not None:
        plan.take(dup)
        await sender.send(text, record)
    if held is not None:
        await sender.send(*held)
    return None
