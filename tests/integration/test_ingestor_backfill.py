"""Integration tests of trade backfills asked for through the control stream.

The processor asks for a REST backfill of a trade-id hole with a ``backfill`` control entry;
the ingestor fetches it (merged with what it fetched or queued itself), writes the pages and one
``backfill_done`` marker saying whether every id came back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any, ClassVar

import fakeredis
import pytest
from aiohttp import web

from tests.integration.ingestor_support import (
    RAW,
    RestVenue,
    entries,
    ingesting_with_rest,
    rest_frames,
    sending_trades,
    trade_frame,
)
from tests.waits import until
from tickpipe.common.schema import RawFrame
from tickpipe.ingestor.gapwatch import GapWatch
from tickpipe.ingestor.rest import RestFetcher
from tickpipe.ingestor.shell import Ingestor
from tickpipe.ingestor.writer import IngestorStats, WriteQueue

CONTROL = "it:{binance:0}:control"


class FakeHistory(RestVenue):
    """Serve historicalTrades and aggTrades for ids ``floor..ceiling``; or refuse every call."""

    routes: ClassVar[dict[str, str]] = {
        "/api/v3/historicalTrades": "serve",
        "/api/v3/aggTrades": "serve",
    }

    def __init__(self, *, floor: int = 1, ceiling: int = 100_000, refuse: bool = False) -> None:
        self.floor, self.ceiling, self.refuse = floor, ceiling, refuse
        self.calls: list[tuple[str, str, str]] = []

    async def serve(self, request: web.Request) -> web.Response:
        query = request.query
        self.calls.append((request.path, query["fromId"], query["limit"]))
        if self.refuse:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        start = max(int(query["fromId"]), self.floor)
        ids = range(start, min(start + int(query["limit"]), self.ceiling + 1))
        key = "a" if request.path.endswith("aggTrades") else "id"
        return web.json_response([{key: n, "p": "1.0", "q": "1.0"} for n in ids])


def backfill(first: int, last: int, stream: str = "trades", **more: str) -> dict[str, str]:
    return {
        "v": "1", "action": "backfill", "symbol": "BTCUSDT", "first_id": str(first),
        "last_id": str(last), "stream": stream, "reason": "trade id gap",
        "entry_id": "1-1", **more,
    }  # fmt: skip


def markers(got: list[RawFrame], event: str) -> list[dict[str, Any]]:
    out = [json.loads(f.data) for f in got if f.kind == "marker"]
    return [m for m in out if m["event"] == event]


def page_ids(got: list[RawFrame]) -> list[int]:
    pages = rest_frames(got, "trades_backfill")
    return [t.get("id", t.get("a")) for page in pages for t in page["response"]]


async def run_ingestor(
    fake: FakeHistory,
    steps: Any,
    *,
    live: tuple[int, ...] = (1,),
    before: list[dict[str, str]] | None = None,
) -> tuple[list[RawFrame], Ingestor]:
    """Run an ingestor whose venue sends the ``live`` trade ids; ``steps(ingestor, redis)``."""
    handler = sending_trades(live)
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    for fields in before or ():
        await redis.xadd(CONTROL, fields)  # type: ignore[arg-type]
    async with ingesting_with_rest(handler, fake, redis) as ingestor:
        await until(lambda: ingestor.stats.frames_received >= len(live))
        await steps(ingestor, redis)
    return await entries(redis, RAW), ingestor


def test_a_requested_backfill_is_fetched_and_closed_with_a_marker() -> None:
    fake = FakeHistory()

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await redis.xadd(CONTROL, backfill(150, 1200))
        await redis.xadd(CONTROL, backfill(10, 12, "aggTrades"))
        await until(lambda: ingestor.stats.backfills_complete == 2)

    got, ingestor = asyncio.run(run_ingestor(fake, steps))
    assert fake.calls == [
        ("/api/v3/historicalTrades", "150", "1000"),
        ("/api/v3/historicalTrades", "1150", "51"),
        ("/api/v3/aggTrades", "10", "3"),
    ]
    assert page_ids(got) == [*range(150, 1201), 10, 11, 12]
    done = markers(got, "backfill_done")
    assert done == [
        {"event": "backfill_done", "symbol": "BTCUSDT", "stream": "trades", "first_id": 150,
         "last_id": 1200, "fetched": 1051, "outcome": "complete", "error": ""},
        {"event": "backfill_done", "symbol": "BTCUSDT", "stream": "aggTrades", "first_id": 10,
         "last_id": 12, "fetched": 3, "outcome": "complete", "error": ""},
    ]  # fmt: skip
    kinds = [(f.kind, f.channel) for f in got if f.channel == "trades_backfill"]
    page, marker = ("rest", "trades_backfill"), ("marker", "trades_backfill")
    assert kinds == [page, page, marker, page, marker]  # each marker after its own pages
    assert ingestor.stats.backfill_requests == 2
    assert ingestor.health_stats()["backfills_complete"] == 2


def test_a_hole_the_ingestor_already_filled_is_not_fetched_again() -> None:
    fake = FakeHistory()

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await until(lambda: ingestor.stats.backfills_complete == 1)  # its own: 3..99
        await redis.xadd(CONTROL, backfill(3, 99))  # the processor saw the same hole
        await redis.xadd(CONTROL, backfill(50, 120))  # and a wider one
        await until(lambda: ingestor.stats.backfills_complete == 2)

    got, ingestor = asyncio.run(run_ingestor(fake, steps, live=(1, 2, 100)))
    assert fake.calls == [
        ("/api/v3/historicalTrades", "3", "97"),
        ("/api/v3/historicalTrades", "100", "21"),
    ]
    assert ingestor.stats.backfills_merged == 1
    done = [(m["first_id"], m["last_id"], m["outcome"]) for m in markers(got, "backfill_done")]
    assert done == [(3, 99, "complete"), (100, 120, "complete")]


def test_history_no_longer_served_ends_partial_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeHistory(floor=180, ceiling=5000)

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await redis.xadd(CONTROL, backfill(150, 200))
        await redis.xadd(CONTROL, backfill(6000, 6010))  # nothing that far yet
        await until(lambda: ingestor.stats.backfills_partial == 2)

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        got, _ = asyncio.run(run_ingestor(fake, steps))
    done = markers(got, "backfill_done")
    assert [(m["fetched"], m["outcome"]) for m in done] == [(21, "partial"), (0, "partial")]
    assert done[0]["error"] == "the venue returned 21 of the 51 trades asked for"
    warned = [r.getMessage() for r in caplog.records if "backfill of" in r.getMessage()]
    assert any("BTCUSDT trades 150..200 partial" in w for w in warned)
    assert any("BTCUSDT trades 6000..6010 partial" in w for w in warned)


def test_a_refused_backfill_ends_failed_with_the_error(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeHistory(refuse=True)

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await redis.xadd(CONTROL, backfill(150, 200))
        await until(lambda: ingestor.stats.backfills_failed == 1)

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        got, ingestor = asyncio.run(run_ingestor(fake, steps))
    done = markers(got, "backfill_done")
    assert len(done) == 1 and done[0]["outcome"] == "failed" and done[0]["fetched"] == 0
    assert "HTTP 400" in done[0]["error"] and "Invalid symbol" in done[0]["error"]
    assert markers(got, "rest_error") == []
    assert any("150..200 failed" in r.getMessage() for r in caplog.records)
    assert "150..200" in ingestor.stats.last_error


def test_backfill_requests_of_an_earlier_run_are_not_fetched_again() -> None:
    fake = FakeHistory()

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await redis.xadd(CONTROL, backfill(500, 510))
        await until(lambda: ingestor.stats.backfills_complete == 1)

    old = [backfill(10, 20), {**backfill(30, 40), "action": "snapshot"}]
    got, ingestor = asyncio.run(run_ingestor(fake, steps, before=old))
    assert fake.calls == [("/api/v3/historicalTrades", "500", "11")]
    assert ingestor.subscriptions.replay_skipped == 2
    assert [(m["first_id"], m["last_id"]) for m in markers(got, "backfill_done")] == [(500, 510)]


def test_a_malformed_backfill_request_is_passed_over_and_the_next_one_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeHistory()

    async def steps(ingestor: Ingestor, redis: Any) -> None:
        await redis.xadd(CONTROL, backfill(200, 100))
        await redis.xadd(CONTROL, backfill(1, 2, "depth"))
        await redis.xadd(CONTROL, backfill(1, 2))
        await until(lambda: ingestor.stats.backfills_complete == 1)

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        asyncio.run(run_ingestor(fake, steps, live=(5,)))
    assert fake.calls == [("/api/v3/historicalTrades", "1", "2")]
    ignored = [
        r.getMessage() for r in caplog.records if "ignoring a control entry" in r.getMessage()
    ]
    assert len(ignored) == 2 and "after last_id" in ignored[0] and "stream" in ignored[1]


def test_a_gap_marker_waits_for_room_in_a_full_queue_instead_of_being_dropped() -> None:
    async def scenario() -> list[str]:
        queue: WriteQueue = asyncio.Queue(maxsize=1)
        stats = IngestorStats()
        rest = RestFetcher("http://127.0.0.1:9", venue="binance", queue=queue, stats=stats,
                           clock=lambda: 1)  # fmt: skip
        gaps = GapWatch(rest, queue, stats, "binance", lambda: 1)
        connection: Any = SimpleNamespace(link=SimpleNamespace(stream=RAW))
        gaps.on_frame(connection, "btcusdt@trade", trade_frame(1))
        queue.put_nowait((RAW, RawFrame("ws", "binance", "c", 1, 1, "{}", "market")))  # full
        gaps.on_frame(connection, "btcusdt@trade", trade_frame(5))  # 2..4 missing
        got = []
        for _ in range(2):
            item = await asyncio.wait_for(queue.get(), 5)
            assert item is not None
            got.append(item[1].kind)
        return got

    assert asyncio.run(scenario()) == ["ws", "marker"]
