"""Integration tests of the ingestor shell against an in-test WebSocket server and fakeredis."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import orjson
import pytest
from websockets.asyncio.server import ServerConnection

from tests.integration.ingestor_support import (
    PRIVATE,
    RAW,
    Handler,
    Numbered,
    entries,
    fast_backoff,
    fast_ingestor,
    hold_open,
    ingesting,
    redis_down,
    running,
    send_trades,
    sending_trades,
    settings_for,
    trade_frame,
    venue,
)
from tests.waits import until, xlen_at_least
from tickpipe.common.errors import ConfigError
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Secret
from tickpipe.ingestor.shell import Ingestor, run

API_KEY, API_SECRET = "it-key-5f2c", "it-secret-9a7e"


def test_frames_land_in_order_with_markers_in_natural_batches() -> None:
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        for n in range(1, 501):
            await ws.send(trade_frame(n))
        await hold_open(ws)

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            ingestor = fast_ingestor(settings_for(url), redis)
            async with running(ingestor):
                await until(lambda: xlen_at_least(redis, RAW, 501))
                health_key = "it:health:ingestor:test-1"

                async def health_shows_all_frames() -> bool:
                    raw = await redis.get(health_key)
                    return raw is not None and orjson.loads(raw)["entries_written"] == 501

                await until(health_shows_all_frames)
                health = orjson.loads(await redis.get(health_key))
                assert health["status"] == "ok"
                assert health["connections_up"] == 1 and health["connections"] == 1
                assert health["frames_received"] == 500 and health["queue_depth"] == 0
            assert not await redis.exists(health_key)

        assert paths == ["/stream?streams=btcusdt@trade"]
        got = await entries(redis, RAW)
        assert len(got) == 502
        connect, frames, disconnect = got[0], got[1:-1], got[-1]
        assert connect.kind == "marker" and json.loads(connect.data)["event"] == "connect"
        assert [f.seq for f in frames] == list(range(1, 501))
        assert [f.data for f in frames] == [trade_frame(n) for n in range(1, 501)]
        assert {f.conn for f in got} == {connect.conn}
        assert all(f.kind == "ws" and f.channel == "market" for f in frames)
        assert [f.ts_recv for f in frames] == sorted(f.ts_recv for f in frames)
        gone = json.loads(disconnect.data)
        assert gone["event"] == "disconnect" and gone["frames"] == 500
        assert "closed by us" in gone["reason"]
        stats = ingestor.stats
        assert stats.frames_received == 500 and stats.entries_written == 502
        assert 1 <= stats.batches_written < 100  # batched, not one round trip per frame
        assert stats.connections_up == 0

    asyncio.run(scenario())


def test_reconnects_after_the_venue_drops_the_connection() -> None:
    @Numbered
    async def handler(ws: ServerConnection, connection: int) -> None:
        if connection == 1:
            await send_trades(ws, range(1, 4))
            await ws.close(1001, "going away")
            return
        await send_trades(ws, range(4, 6))
        await hold_open(ws)

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting(handler, redis) as ingestor:
            await until(lambda: xlen_at_least(redis, RAW, 8))
        return await entries(redis, RAW), ingestor

    got, ingestor = asyncio.run(scenario())
    kinds = [(f.kind, f.seq) for f in got]
    assert kinds == [
        ("marker", 0),
        ("ws", 1),
        ("ws", 2),
        ("ws", 3),
        ("marker", 3),
        ("marker", 0),
        ("ws", 1),
        ("ws", 2),
        ("marker", 2),
    ]
    first, second = got[0].conn, got[5].conn
    assert first != second
    assert {f.conn for f in got[:5]} == {first} and {f.conn for f in got[5:]} == {second}
    dropped = json.loads(got[4].data)
    assert dropped["event"] == "disconnect" and dropped["frames"] == 3
    assert "1001" in dropped["reason"]
    assert json.loads(got[5].data)["event"] == "connect"
    assert [json.loads(f.data)["data"]["t"] for f in got if f.kind == "ws"] == [1, 2, 3, 4, 5]
    assert ingestor.stats.reconnects == 1


def test_redis_outage_applies_back_pressure_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = 300

    handler = sending_trades(range(1, total + 1))

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        server, redis = redis_down()
        async with ingesting(handler, redis, queue_max=20) as ingestor:
            await until(lambda: ingestor.stats.queue_full_waits > 0)
            writer = ingestor.writer
            assert writer is not None
            await until(lambda: writer.backoff.attempt >= 3)  # several retries, one outage
            assert ingestor.queue.qsize() <= 20
            assert ingestor.stats.redis_up is False
            assert ingestor.stats.frames_received < total  # the reader is held back
            server.connected = True
            await until(lambda: xlen_at_least(redis, RAW, total + 1))
        return await entries(redis, RAW), ingestor

    with caplog.at_level(logging.WARNING, logger="tickpipe.ingestor"):
        got, ingestor = asyncio.run(scenario())
    frames = [f for f in got if f.kind == "ws"]
    assert [f.seq for f in frames] == list(range(1, total + 1))
    assert [json.loads(f.data)["data"]["t"] for f in frames] == list(range(1, total + 1))
    writer = [r for r in caplog.records if "ingestor writing frames" in r.getMessage()]
    down = [r for r in writer if "Redis cannot take it now" in r.getMessage()]
    back = [r for r in writer if "Redis takes commands again" in r.getMessage()]
    assert len(down) == 1 and len(back) == 1
    assert ingestor.stats.redis_outages == 1 and ingestor.stats.redis_up


def test_stop_while_redis_is_down_gives_up_after_the_flush_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = sending_trades(range(1, 51))

    async def scenario() -> tuple[Ingestor, float]:
        _, redis = redis_down()
        async with venue(handler) as url:
            ingestor = fast_ingestor(settings_for(url), redis, flush_timeout_s=0.3)
            async with running(ingestor):
                await until(lambda: ingestor.stats.frames_received == 50)
                started = time.monotonic()
            return ingestor, time.monotonic() - started

    with caplog.at_level(logging.ERROR, logger="tickpipe.ingestor"):
        ingestor, took_s = asyncio.run(scenario())
    assert took_s < 4.0
    # 50 frames + connect + disconnect markers were never written, and that is reported.
    assert ingestor.stats.dropped_at_stop == 52
    assert any("52 frames" in r.getMessage() for r in caplog.records)


def _verify_signature(params: dict[str, Any]) -> bool:
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
    expected = hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return bool(params.get("apiKey") == API_KEY and params.get("signature") == expected)


def private_handler(replies: list[Callable[[dict[str, Any]], dict[str, Any]]]) -> Handler:
    """Serve market frames on /stream and answer WS-API subscriptions from ``replies`` in turn."""
    seen: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        if not ws.request.path.startswith("/ws-api/v3"):
            await ws.send(trade_frame(1))
            await hold_open(ws)
            return
        seen.append(time.monotonic())
        request = json.loads(await ws.recv())
        while request["method"] == "time":  # the ingestor asks the venue's clock first
            now_ms = time.time_ns() // 1_000_000
            answer = {"id": request["id"], "status": 200, "result": {"serverTime": now_ms}}
            await ws.send(orjson.dumps(answer).decode())
            request = json.loads(await ws.recv())
        assert request["method"] == "userDataStream.subscribe.signature"
        answer = replies[min(len(seen), len(replies)) - 1](request)
        await ws.send(orjson.dumps({"id": request["id"], **answer}).decode())
        if answer.get("status") == 200:
            event = {"e": "outboundAccountPosition", "E": 1, "u": 1, "B": []}
            await ws.send(orjson.dumps({"subscriptionId": 0, "event": event}).decode())
        await hold_open(ws)

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def subscribed(request: dict[str, Any]) -> dict[str, Any]:
    if not _verify_signature(request["params"]):
        return {"status": 400, "error": {"code": -1022, "msg": "Signature is not valid."}}
    return {"status": 200, "result": {"subscriptionId": 0}}


def keyed_ingestor(url: str, redis: Any) -> Ingestor:
    """An ingestor with an API key (so with a private slot) against the venue at ``url``."""
    settings = settings_for(
        url, binance_api_key=Secret(API_KEY), binance_api_secret=Secret(API_SECRET)
    )
    return fast_ingestor(settings, redis)


def test_private_connection_subscribes_and_records_user_data() -> None:
    handler = private_handler([subscribed])

    async def scenario() -> tuple[list[RawFrame], Ingestor, list[bytes]]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            ingestor = keyed_ingestor(url, redis)
            async with running(ingestor):
                await until(lambda: xlen_at_least(redis, PRIVATE, 3))
                await until(lambda: ingestor.stats.private_subscribed)
        dump = [
            b"".join(k + b"=" + v for k, v in fields.items())
            for stream in (RAW, PRIVATE)
            for _, fields in await redis.xrange(stream)
        ]
        assert len(dump) >= 6
        return await entries(redis, PRIVATE), ingestor, dump

    got, ingestor, dump = asyncio.run(scenario())
    # The venue's four time answers (the clock offset) come first, recorded like every frame.
    assert [f.kind for f in got] == ["marker"] + ["ws"] * 6 + ["marker"]
    assert all(f.channel == "private" for f in got)
    assert all("serverTime" in json.loads(f.data)["result"] for f in got[1:5])
    assert json.loads(got[5].data)["result"] == {"subscriptionId": 0}
    assert json.loads(got[6].data)["event"]["e"] == "outboundAccountPosition"
    assert ingestor.stats.connections_up == 0
    assert not any(API_KEY.encode() in d or API_SECRET.encode() in d for d in dump)


def test_rejected_key_stops_with_one_config_error_and_no_retry() -> None:
    def rejected(_: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": 401,
            "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
        }

    handler = private_handler([rejected])

    async def scenario() -> float:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            settings = settings_for(
                url, binance_api_key=Secret(API_KEY), binance_api_secret=Secret(API_SECRET)
            )
            started = time.monotonic()
            with pytest.raises(ConfigError) as info:
                await asyncio.wait_for(
                    run(settings, asyncio.Event(), redis=redis, backoff_factory=fast_backoff), 10
                )
            message = str(info.value)
            assert "BINANCE_API_KEY" in message and "BINANCE_API_SECRET" in message
            assert API_KEY not in message and API_SECRET not in message
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 3.0
    assert len(handler.seen) == 1  # type: ignore[attr-defined]


def test_rate_limited_subscription_waits_for_retry_after() -> None:
    def limited(_: dict[str, Any]) -> dict[str, Any]:
        retry_at = time.time_ns() // 1_000_000 + 400
        data = {"serverTime": retry_at - 400, "retryAfter": retry_at}
        return {"status": 429, "error": {"code": -1003, "msg": "Too many requests", "data": data}}

    handler = private_handler([limited, subscribed])

    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            ingestor = keyed_ingestor(url, redis)
            async with running(ingestor):
                await until(lambda: ingestor.stats.private_subscribed)

    asyncio.run(scenario())
    seen = handler.seen  # type: ignore[attr-defined]
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.35


def test_long_symbol_lists_are_subscribed_by_message_and_refusals_do_not_stop_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    symbols = tuple(f"SYM{n:04d}USDT" for n in range(150))
    received: list[dict[str, Any]] = []
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        request = json.loads(await ws.recv())
        received.append(request)
        await ws.send(orjson.dumps({"result": None, "id": request["id"]}).decode())
        refusal = {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 99}
        await ws.send(orjson.dumps(refusal).decode())
        await ws.send(trade_frame(1, "SYM0000USDT"))
        await hold_open(ws)

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with ingesting(handler, redis, settings={"symbols": symbols}) as ingestor:
            await until(lambda: xlen_at_least(redis, RAW, 4))
        return await entries(redis, RAW), ingestor

    with caplog.at_level(logging.ERROR, logger="tickpipe.ingestor"):
        got, ingestor = asyncio.run(scenario())
    assert paths == ["/stream"]
    assert len(received) == 1 and received[0]["method"] == "SUBSCRIBE"
    assert received[0]["params"] == [f"{s.lower()}@trade" for s in symbols]
    assert [f.kind for f in got] == ["marker", "ws", "ws", "ws", "marker"]
    assert ingestor.stats.reconnects == 0
    assert "invalid stream" in ingestor.stats.last_error
    assert any("invalid stream" in r.getMessage() for r in caplog.records)


def test_check_reports_unreachable_redis(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tickpipe.ingestor.__main__ import main

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(["--check", "--env-file", "/nonexistent/.env"])
    finally:
        root.handlers[:], root.level = handlers, level
    assert code == 1
    assert "Redis unreachable" in capsys.readouterr().err


def test_a_connection_closed_while_asking_the_venue_time_ends_the_session_cleanly() -> None:
    """The private slot asks the venue's clock before it signs; a close then is a normal loss."""
    closes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal closes
        assert ws.request is not None
        if not ws.request.path.startswith("/ws-api/v3"):
            await ws.send(trade_frame(1))
            await hold_open(ws)
            return
        request = json.loads(await ws.recv())
        assert request["method"] == "time"
        closes += 1
        await ws.close()

    async def scenario() -> tuple[list[RawFrame], Ingestor]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with venue(handler) as url:
            ingestor = keyed_ingestor(url, redis)
            async with running(ingestor):
                await until(lambda: closes >= 2)
        return await entries(redis, PRIVATE), ingestor

    got, ingestor = asyncio.run(scenario())
    events = [json.loads(f.data)["event"] for f in got if f.kind == "marker"]
    assert events.count("connect") >= 2
    assert events.count("connect") == events.count("disconnect")
    assert ingestor.stats.connections_up == 0 and not ingestor.stats.private_subscribed
