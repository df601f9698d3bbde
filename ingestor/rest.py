"""Fetch REST depth snapshots and trade backfills off the read loop and write them into raw.

One worker per ingestor serves the requests, spends their weight from one
:class:`~ingestor.gaps.WeightBudget`, and honours ``Retry-After`` (429) and bans (418). Each
answer becomes a raw entry of kind ``rest``, channel ``depth_snapshot`` or ``trades_backfill``,
whose data is ``{"symbol", "request", "reason", "response"}``. Snapshots go first: a waiting one
is fetched between two pages of a long backfill.

A trade backfill pages through ``/api/v3/historicalTrades?fromId`` (id space ``trades``) or
``/api/v3/aggTrades?fromId`` (``aggTrades``) until it has covered its range. Requests for ids
fetched recently, being fetched or queued are merged (:class:`~ingestor.backfills.BackfillPlan`):
the ingestor's gap tracking and the processor's requests often name the same hole. After the
pages of every backfill one ``marker`` entry, channel ``trades_backfill``, tells how it went::

    {"event": MarkerEvent.BACKFILL_DONE, "symbol", "stream", "first_id", "last_id", "fetched",
     "outcome": "complete" | "partial" | "failed", "error"}

``partial``: the venue returned fewer of the ids than asked (history no longer served);
``failed``: it refused the request or kept failing (``error`` says how; pages written before
that stay). A refused depth snapshot is a ``rest_error`` marker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from tickpipe.common.contract import MarkerEvent, RawKind
from tickpipe.common.links import retry_after_from_header
from tickpipe.common.schema import RawFrame
from tickpipe.common.tls import http_connector
from tickpipe.ingestor.backfills import BackfillJob, BackfillPlan, Range
from tickpipe.ingestor.gaps import WeightBudget, depth_weight
from tickpipe.ingestor.writer import IngestorStats, WriteQueue

__all__ = ["DEPTH_LIMIT", "RestFetcher", "RestRequest"]

log = logging.getLogger("tickpipe.ingestor")

DEPTH_LIMIT = 1000
_PAGE = 1000
_ATTEMPTS = 5
#: Per id space: the REST path, its weight, the id field of its items.
_BACKFILL = {
    "trades": ("/api/v3/historicalTrades", 25, "id"),
    "aggTrades": ("/api/v3/aggTrades", 4, "a"),
}


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A depth snapshot of ``symbol``, to write into ``stream``."""

    kind: str  # "depth_snapshot"
    stream: str  # the raw stream to write into
    symbol: str
    reason: str


class RestFetcher:
    """Serve snapshots and backfills one at a time under one weight budget."""

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
        plan: BackfillPlan | None = None,
    ) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.venue = venue
        self.queue = queue
        self.stats = stats
        self.clock = clock
        self.api_key = api_key
        self.budget = budget or WeightBudget()
        self.plan = plan or BackfillPlan()
        self._snapshots: dict[str, RestRequest] = {}
        self._work = asyncio.Event()
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._conn = f"rest/{clock() // 1000:x}"

    def snapshot(self, stream: str, symbol: str, reason: str) -> None:
        """Queue a depth snapshot of ``symbol`` (at most one waiting per symbol)."""
        if symbol not in self._snapshots:
            self._snapshots[symbol] = RestRequest("depth_snapshot", stream, symbol, reason)
            self._work.set()

    def backfill(
        self,
        stream: str,
        symbol: str,
        first_id: int,
        last_id: int,
        reason: str,
        *,
        id_space: str = "trades",
        force: bool = False,
    ) -> list[Range]:
        """Queue a backfill of ids ``first_id..last_id`` of ``symbol``; return the new ranges.

        Ids fetched recently, being fetched or queued are not fetched again (``force``: the
        pages that held them were lost, fetch them anyway).
        """
        fresh = self.plan.request(
            stream, symbol, id_space, first_id, last_id, reason, self.clock(), force=force
        )
        if fresh:
            self._work.set()
        else:
            self.stats.backfills_merged += 1
            log.info(
                "backfill of %s %s %d..%d merged: already fetched, being fetched or queued",
                symbol,
                id_space,
                first_id,
                last_id,
                extra={"reason": reason},
            )
        return fresh

    def pending(self) -> int:
        """Return how many snapshots and backfills wait or run."""
        return len(self._snapshots) + self.plan.pending()

    async def run(self) -> None:
        """Serve requests until cancelled."""
        headers = {"X-MBX-APIKEY": self.api_key} if self.api_key else {}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=http_connector()
        ) as http:
            while True:
                await self._snapshots_due(http)
                job = self.plan.next_job()
                if job is not None:
                    await self._backfill(http, job)
                    continue
                if not self._snapshots:
                    self._work.clear()
                    await self._work.wait()

    async def _snapshots_due(self, http: aiohttp.ClientSession) -> None:
        while self._snapshots:
            symbol = next(iter(self._snapshots))
            request = self._snapshots.pop(symbol)
            try:
                await self._snapshot(http, request)
            except _Refused as exc:
                await self._error(request, str(exc))

    async def _snapshot(self, http: aiohttp.ClientSession, request: RestRequest) -> None:
        params = {"symbol": request.symbol, "limit": str(DEPTH_LIMIT)}
        body = await self._get(http, "/api/v3/depth", params, depth_weight(DEPTH_LIMIT))
        await self._write(request.stream, request.kind, request.symbol, request.reason, body, {
            "path": "/api/v3/depth", "params": params,
        })  # fmt: skip
        self.stats.rest_snapshots += 1

    async def _backfill(self, http: aiohttp.ClientSession, job: BackfillJob) -> None:
        """Page through the job's range, then write its ``backfill_done`` marker."""
        path, weight, key = _BACKFILL[job.stream]
        next_id, error = job.first_id, ""
        got: set[int] = set()
        try:
            while next_id <= job.last_id:
                await self._snapshots_due(http)
                limit = min(_PAGE, job.last_id - next_id + 1)
                params = {"symbol": job.symbol, "fromId": str(next_id), "limit": str(limit)}
                body = await self._get(http, path, params, weight)
                ids = _ids(body, key)
                if ids is None:
                    raise _Refused(f"{path} answered something else than a list of trades")
                if not ids:
                    break  # nothing from next_id on: no longer served, or not traded yet
                await self._write(job.raw, "trades_backfill", job.symbol, job.reason, body, {
                    "path": path, "params": params,
                })  # fmt: skip
                self.stats.rest_backfilled += len(body)
                got.update(n for n in ids if job.first_id <= n <= job.last_id)
                next_id = max(max(ids) + 1, next_id + 1)
        except _Refused as exc:
            error = str(exc)
        settled = next_id - 1 if error else job.last_id
        self.plan.finished(job, settled, self.clock())
        await self._done(job, len(got), error)

    async def _done(self, job: BackfillJob, fetched: int, error: str) -> None:
        if error:
            outcome = "failed"
            self.stats.backfills_failed += 1
        elif fetched < job.size:
            outcome = "partial"
            error = f"the venue returned {fetched} of the {job.size} trades asked for"
            self.stats.backfills_partial += 1
        else:
            outcome = "complete"
            self.stats.backfills_complete += 1
        if outcome != "complete":
            self.stats.last_error = f"backfill {job.symbol} {job.first_id}..{job.last_id}: {error}"
            log.warning(
                "backfill of %s %s %d..%d %s: %s",
                job.symbol,
                job.stream,
                job.first_id,
                job.last_id,
                outcome,
                error,
                extra={"fetched": fetched, "reason": job.reason},
            )
        event = {
            "event": MarkerEvent.BACKFILL_DONE,
            "symbol": job.symbol,
            "stream": job.stream,
            "first_id": job.first_id,
            "last_id": job.last_id,
            "fetched": fetched,
            "outcome": outcome,
            "error": error,
        }
        await self._marker(job.raw, event, "trades_backfill")

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
        self,
        stream: str,
        channel: str,
        symbol: str,
        reason: str,
        body: Any,
        request: dict[str, Any],
    ) -> None:
        data = {"symbol": symbol, "request": request, "reason": reason, "response": body}
        self._last_seq = next(self._seq)
        frame = RawFrame(
            RawKind.REST, self.venue, self._conn, self._last_seq, self.clock(),
            orjson.dumps(data).decode(), channel,
        )  # fmt: skip
        await self.queue.put((stream, frame))

    async def _marker(self, stream: str, event: dict[str, Any], channel: str) -> None:
        text = orjson.dumps(event).decode()
        frame = RawFrame(RawKind.MARKER, self.venue, self._conn, self._last_seq, self.clock(), text,
                         channel)  # fmt: skip
        await self.queue.put((stream, frame))

    async def _error(self, request: RestRequest, why: str) -> None:
        self.stats.last_error = f"REST {request.kind} {request.symbol}: {why}"
        log.error("REST %s of %s refused: %s", request.kind, request.symbol, why)
        event = {"event": MarkerEvent.REST_ERROR, "kind": request.kind, "symbol": request.symbol}
        await self._marker(request.stream, {**event, "error": why}, request.kind)


def _ids(body: Any, key: str) -> list[int] | None:
    """Return the ids of a REST trades page, or ``None`` if it is not one."""
    if not isinstance(body, list):
        return None
    try:
        return [int(item[key]) for item in body]
    except (KeyError, TypeError, ValueError):
        return None


class _Refused(Exception):
    """The venue refused the request, or it kept failing."""
