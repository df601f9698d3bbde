"""Fetch REST depth snapshots and trade backfills off the read loop and write them into raw.

One worker per ingestor takes requests from a queue, spends their weight from one
:class:`~ingestor.gaps.WeightBudget`, and honours ``Retry-After`` (429) and bans (418). Each
answer becomes a raw entry of kind ``rest``, channel ``depth_snapshot`` or ``trades_backfill``,
whose data is ``{"symbol", "request", "response"}``; a backfill pages through
``/api/v3/historicalTrades?fromId`` until it has covered the hole. A request the venue refuses
is written as a ``rest_error`` marker and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from common.schema import RawFrame
from ingestor.gaps import DepthIds, TradeIds, WeightBudget, depth_ids_of, depth_weight, trade_of
from ingestor.session import retry_after_from_header
from ingestor.writer import IngestorStats, WriteQueue

if TYPE_CHECKING:
    from ingestor.connection import Connection

__all__ = ["DEPTH_LIMIT", "GapWatch", "RestFetcher", "RestRequest"]

log = logging.getLogger("tickpipe.ingestor")

DEPTH_LIMIT = 1000
_PAGE = 1000
_HISTORICAL_WEIGHT = 25
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A snapshot (``first_id`` unused) or a backfill of trade ids ``first_id..last_id``."""

    kind: str  # "depth_snapshot" | "trades_backfill"
    stream: str  # the raw stream to write into
    symbol: str
    reason: str
    first_id: int = 0
    last_id: int = 0


class RestFetcher:
    """Serve :class:`RestRequest` s one at a time under one weight budget."""

    def __init__(
        self,
        rest_url: str,
        *,
        venue: str,
        queue: WriteQueue,
        stats: IngestorStats,
        clock: Callable[[], int],
        api_key: str = "",
        budget: WeightBudget | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.venue = venue
        self.queue = queue
        self.stats = stats
        self.clock = clock
        self.api_key = api_key
        self.budget = budget or WeightBudget()
        self.requests: asyncio.Queue[RestRequest] = asyncio.Queue()
        self._seq = itertools.count(1)
        self._conn = f"rest/{clock() // 1000:x}"
        self._wanted: set[tuple[str, str]] = set()

    def snapshot(self, stream: str, symbol: str, reason: str) -> None:
        """Queue a depth snapshot of ``symbol`` (at most one waiting per symbol)."""
        if ("depth_snapshot", symbol) in self._wanted:
            return
        self._wanted.add(("depth_snapshot", symbol))
        self.requests.put_nowait(RestRequest("depth_snapshot", stream, symbol, reason))

    def backfill(self, stream: str, symbol: str, first_id: int, last_id: int, reason: str) -> None:
        """Queue a backfill of trade ids ``first_id..last_id`` of ``symbol``."""
        request = RestRequest("trades_backfill", stream, symbol, reason, first_id, last_id)
        self.requests.put_nowait(request)

    async def run(self) -> None:
        """Serve requests until cancelled."""
        headers = {"X-MBX-APIKEY": self.api_key} if self.api_key else {}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            while True:
                request = await self.requests.get()
                self._wanted.discard((request.kind, request.symbol))
                try:
                    if request.kind == "depth_snapshot":
                        await self._snapshot(http, request)
                    else:
                        await self._backfill(http, request)
                except _Refused as exc:
                    await self._error(request, str(exc))

    async def _snapshot(self, http: aiohttp.ClientSession, request: RestRequest) -> None:
        params = {"symbol": request.symbol, "limit": str(DEPTH_LIMIT)}
        body = await self._get(http, "/api/v3/depth", params, depth_weight(DEPTH_LIMIT))
        await self._write(request, "/api/v3/depth", params, body)
        self.stats.rest_snapshots += 1

    async def _backfill(self, http: aiohttp.ClientSession, request: RestRequest) -> None:
        next_id = request.first_id
        while next_id <= request.last_id:
            limit = min(_PAGE, request.last_id - next_id + 1)
            params = {"symbol": request.symbol, "fromId": str(next_id), "limit": str(limit)}
            path = "/api/v3/historicalTrades"
            body = await self._get(http, path, params, _HISTORICAL_WEIGHT)
            if not isinstance(body, list) or not body:
                break
            await self._write(request, path, params, body)
            self.stats.rest_backfilled += len(body)
            next_id = max(int(t.get("id", next_id)) for t in body) + 1

    async def _get(
        self, http: aiohttp.ClientSession, path: str, params: dict[str, str], weight: int
    ) -> Any:
        for _attempt in range(_ATTEMPTS):
            delay_ns = self.budget.wait_ns(weight, time.monotonic_ns())
            while delay_ns:
                await asyncio.sleep(delay_ns / 1e9 + 0.001)
                delay_ns = self.budget.wait_ns(weight, time.monotonic_ns())
            try:
                async with http.get(self.rest_url + path, params=params) as response:
                    text = await response.read()
                    if response.status in (418, 429):
                        wait = retry_after_from_header(response.headers.get("Retry-After"))
                        self.budget.block(time.monotonic_ns(), wait if wait is not None else 60.0)
                        log.warning("REST %s rate-limited (HTTP %d)", path, response.status)
                        continue
                    if response.status >= 500:
                        await asyncio.sleep(1.0)
                        continue
                    if response.status >= 400:
                        raise _Refused(
                            f"HTTP {response.status}: {text[:200].decode(errors='replace')}"
                        )
                    return orjson.loads(text)
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                log.warning("REST %s failed: %s", path, exc)
                await asyncio.sleep(1.0)
        raise _Refused(f"{path} failed {_ATTEMPTS} times")

    async def _write(
        self, request: RestRequest, path: str, params: dict[str, str], body: Any
    ) -> None:
        data = {"symbol": request.symbol, "request": {"path": path, "params": params}}
        text = orjson.dumps({**data, "reason": request.reason, "response": body}).decode()
        frame = RawFrame(
            "rest", self.venue, self._conn, next(self._seq), self.clock(), text, request.kind
        )
        await self.queue.put((request.stream, frame))

    async def _error(self, request: RestRequest, why: str) -> None:
        self.stats.last_error = f"REST {request.kind} {request.symbol}: {why}"
        log.error("REST %s of %s refused: %s", request.kind, request.symbol, why)
        event = {"event": "rest_error", "kind": request.kind, "symbol": request.symbol}
        text = orjson.dumps({**event, "error": why}).decode()
        frame = RawFrame("marker", self.venue, self._conn, 0, self.clock(), text, request.kind)
        await self.queue.put((request.stream, frame))


class GapWatch:
    """Watch live trade and depth ids for holes; mark them and ask :class:`RestFetcher` to fill.

    A trade id that skips ahead (after a reconnect, or a venue-side gap) is backfilled from
    ``historicalTrades``; a depth diff that does not follow on, and every connection that starts
    delivering depth, gets a fresh snapshot. Each hole is written as a ``gap`` marker.
    """

    def __init__(
        self,
        rest: RestFetcher,
        queue: WriteQueue,
        stats: IngestorStats,
        venue: str,
        clock: Callable[[], int],
    ) -> None:
        self.rest = rest
        self.queue = queue
        self.stats = stats
        self.venue = venue
        self.clock = clock
        self.trade_ids = TradeIds()
        self.depth_ids = DepthIds()

    def on_frame(self, connection: Connection, stream: str, message: str | bytes) -> None:
        """Check one data frame of ``stream`` for a trade-id or depth-id hole."""
        if "@depth" in stream:
            self._on_depth(connection, message)
            return
        if not stream.endswith("@trade"):
            return
        trade = trade_of(message)
        if trade is None:
            return
        hole = self.trade_ids.seen(*trade)
        if hole is None:
            return
        symbol, (first, last) = trade[0], hole
        self.stats.trade_gaps += 1
        self._gap_marker(connection, "trade_ids", symbol, first, last)
        self.rest.backfill(connection.link.stream, symbol, first, last, "trade id gap")

    def _on_depth(self, connection: Connection, message: str | bytes) -> None:
        ids = depth_ids_of(message)
        hole = None if ids is None else self.depth_ids.seen(*ids)
        if ids is None or hole is None:
            return
        self.stats.depth_gaps += 1
        self._gap_marker(connection, "depth_ids", ids[0], *hole)
        self.rest.snapshot(connection.link.stream, ids[0], "depth gap")

    def _gap_marker(
        self, connection: Connection, kind: str, symbol: str, first: int, last: int
    ) -> None:
        event = {"event": "gap", "kind": kind, "symbol": symbol, "first_id": first}
        data = orjson.dumps({**event, "last_id": last}).decode()
        marker = RawFrame("marker", self.venue, "", 0, self.clock(), data, "market")
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait((connection.link.stream, marker))

    def on_delivered(self, connection: Connection) -> None:
        """Ask for a snapshot of every depth stream of a connection that started delivering."""
        for stream in connection.streams or ():
            symbol, _, channel = stream.partition("@")
            if channel.startswith("depth"):
                self.rest.snapshot(connection.link.stream, symbol.upper(), "connected")


class _Refused(Exception):
    """The venue refused the request, or it kept failing."""
