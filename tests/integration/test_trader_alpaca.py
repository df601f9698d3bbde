"""Integration tests of the trader routing to the mock's Alpaca venue over REST."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest
from aiohttp import web

from tests.builders import build_order_update, build_signal
from tests.integration.test_trader_shell import seed_market
from tests.stages import stage_running
from tests.waits import until
from tickpipe.common.errors import ConfigError
from tickpipe.common.names import Partition
from tickpipe.common.schema import OrderUpdate, Signal, decode_fields
from tickpipe.common.settings import Secret, Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.ground_truth import read_ground_truth
from tickpipe.trader.shell import run
from tickpipe.venues.alpaca.rest import AlpacaRest

KEY, SECRET = "alpaca-key", "alpaca-secret"
PARTITION = Partition("alpaca", 0)


def make_settings(mock: MockExchange, **changes: Any) -> Settings:
    assert mock.alpaca_rest_url is not None
    base = Settings(
        namespace="ta",
        instance="trader-alpaca-test",
        venue="alpaca",
        symbols=("FAKEPACA",),
        order_qty="1",
        max_position="5",
        trader_lease_ms=1000,  # a crashed run's lease runs out in a second
        alpaca_rest_url=mock.alpaca_rest_url,
        alpaca_api_key=Secret(KEY),
        alpaca_api_secret=Secret(SECRET),
    )
    return replace(base, **changes)


def make_signal(signal_id: str = "threshold:FAKEPACA:1", **changes: Any) -> Signal:
    # The price values the order for the risk limits.
    fields = {"venue": "alpaca", "symbol": "FAKEPACA", "qty": "1", "price": "100"}
    return build_signal(signal_id=signal_id, **(fields | changes))


async def alpaca_mock(truth: Path) -> MockExchange:
    """Start the mock's Alpaca venue with this module's key; it records to ``truth``."""
    return await start_mock(
        alpaca_port=0, api_key=KEY, api_secret=SECRET, ground_truth_path=str(truth)
    )


async def signalled(settings: Settings, *signals: Signal) -> Any:
    """Return a fresh fakeredis with FAKEPACA's market at 100 and ``signals`` to be read."""
    redis = fakeredis.FakeAsyncRedis()
    await seed_market(redis, settings, "FAKEPACA", "100")
    for signal in signals:
        await redis.xadd(settings.keys.signals(PARTITION), signal.to_fields())
    return redis


async def order_events(redis: Any, settings: Settings) -> list[dict[str, str]]:
    return [decode_fields(f) for _, f in await redis.xrange(settings.keys.orders("alpaca"))]


async def wait_event(redis: Any, settings: Settings, event: str, n: int = 1) -> dict[str, str]:
    async def found() -> list[dict[str, str]]:
        hits = [e for e in await order_events(redis, settings) if e["event"] == event]
        return hits if len(hits) >= n else []

    hits = await until(found, what=f"{n} {event!r} entries")
    return dict(hits[n - 1])


def filled_update(cid: str, order_id: str) -> OrderUpdate:
    return build_order_update(
        venue="alpaca",
        symbol="FAKEPACA",
        client_order_id=cid,
        order_id=order_id,
        qty="1",
        filled_qty="1",
        last_qty="1",
        last_price="100",
        cum_quote="100",
        trade_id="e-1",
    )


def placed(truth: Path, cid: str) -> list[dict[str, Any]]:
    return [
        o for o in read_ground_truth(truth).events("alpaca_order") if o["client_order_id"] == cid
    ]


class HoldingProxy:
    """Forward requests to the mock; forward the first ``hold`` order POSTs but never answer."""

    def __init__(self, target: str, hold: int = 1) -> None:
        self.target = target.rstrip("/")
        self.hold = hold
        self.held = 0
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.http: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("apca-")}
        if body:
            headers["Content-Type"] = "application/json"
        async with self.http.request(
            request.method, self.target + request.path_qs, data=body or None, headers=headers
        ) as answer:
            raw = await answer.read()
            status = answer.status
        if request.method == "POST" and request.path == "/v2/orders" and self.held < self.hold:
            self.held += 1
            await self.release.wait()  # the order is placed; its answer never arrives in time
        return web.Response(status=status, body=raw, content_type="application/json")

    async def close(self) -> None:
        self.release.set()
        if self.http is not None:
            await self.http.close()
        if self.runner is not None:
            await self.runner.cleanup()


@contextlib.asynccontextmanager
async def proxied_mock(truth: Path) -> AsyncIterator[tuple[MockExchange, HoldingProxy]]:
    """Start the Alpaca mock with a HoldingProxy in front of its REST API; close both after."""
    mock = await alpaca_mock(truth)
    assert mock.alpaca_rest_url is not None
    proxy = HoldingProxy(mock.alpaca_rest_url)
    await proxy.start()
    try:
        yield mock, proxy
    finally:
        await proxy.close()
        await mock.close()


def test_signal_places_exactly_one_order_and_records_the_ack(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        mock = await alpaca_mock(truth)
        try:
            settings = make_settings(mock)
            signal = make_signal()
            redis = await signalled(settings, signal)
            async with stage_running(run, settings, redis=redis):
                ack = await wait_event(redis, settings, "ack")
                cid = client_order_id_for(signal.signal_id)
                # The fill arrives as the processor writes it: an OrderUpdate with Binance statuses.
                fill = filled_update(cid, ack["order_id"])
                await redis.xadd(settings.keys.order_updates("alpaca"), fill.to_fields())
                positions = settings.keys.positions("alpaca")

                async def position() -> bool:
                    return decode_fields(await redis.hgetall(positions)).get("FAKEPACA") == "1"

                await until(position, what="the position")
        finally:
            await mock.close()
        assert ack["client_order_id"] == cid and ack["source"] == "place"
        assert ack["status"] == "NEW" and ack["order_id"]  # the POST answers "accepted"
        orders = placed(truth, cid)
        assert len(orders) == 1, orders
        assert orders[0]["accepted"] and orders[0]["id"] == ack["order_id"]
        assert orders[0]["side"] == "buy" and orders[0]["time_in_force"] == "day"
        assert not await redis.smembers(settings.keys.working_orders("alpaca"))

    asyncio.run(scenario())


def test_crash_after_sending_then_restart_keeps_one_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        signal = make_signal("threshold:FAKEPACA:crash")
        cid = client_order_id_for(signal.signal_id)
        async with proxied_mock(truth) as (mock, proxy):
            settings = make_settings(mock)
            redis = await signalled(settings, signal)
            rest = AlpacaRest(proxy.url, api_key=KEY, api_secret=SECRET, request_timeout_s=60)
            task = asyncio.create_task(run(settings, asyncio.Event(), redis=redis, venue=rest))

            async def sent() -> bool:
                return proxy.held == 1 and bool(placed(truth, cid))

            await until(sent, what="the order at the venue")
            task.cancel()  # the crash: intent recorded, order sent, no answer recorded
            with pytest.raises(asyncio.CancelledError):
                await task
            await rest.aclose()
            events = [e["event"] for e in await order_events(redis, settings)]
            assert [e for e in events if e != "instruments"] == ["intent"]  # filters: not orders

            # The restart reads the unacknowledged signal again.
            async with stage_running(run, settings, redis=redis):
                ack = await wait_event(redis, settings, "ack")
        # Looked up by the reconciliation at start, before the signal is read again.
        assert ack["source"] == "status:reconcile:start" and ack["status"] == "FILLED"
        assert len(placed(truth, cid)) == 1

    asyncio.run(scenario())


def test_first_post_times_out_and_is_resolved_by_query(tmp_path: Path) -> None:
    async def scenario() -> None:
        truth = tmp_path / "truth.jsonl"
        signal = make_signal("threshold:FAKEPACA:timeout")
        async with proxied_mock(truth) as (mock, proxy):
            rest = AlpacaRest(proxy.url, api_key=KEY, api_secret=SECRET, request_timeout_s=0.5)
            try:
                settings = make_settings(mock)
                redis = await signalled(settings, signal)
                async with stage_running(run, settings, redis=redis, venue=rest):
                    ack = await wait_event(redis, settings, "ack")
            finally:
                await rest.aclose()
        assert proxy.held == 1
        assert ack["source"] == "status:ambiguous" and ack["status"] == "FILLED"
        assert len(placed(truth, client_order_id_for(signal.signal_id))) == 1

    asyncio.run(scenario())


def test_cancel_signal_cancels_a_resting_limit_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await alpaca_mock(tmp_path / "truth.jsonl")
        try:
            # Far below the market, so it rests: a band wide enough to let it through.
            settings = make_settings(mock, order_type="LIMIT", price_band_bps="10000")
            signals = settings.keys.signals(PARTITION)
            resting = make_signal("threshold:FAKEPACA:limit", price="1.00")
            redis = await signalled(settings, resting)
            async with stage_running(run, settings, redis=redis):
                ack = await wait_event(redis, settings, "ack")
                assert ack["status"] == "NEW"
                cancel = make_signal("threshold:FAKEPACA:cancel", action="cancel")
                await redis.xadd(signals, cancel.to_fields())
                canceled = await wait_event(redis, settings, "canceled")
            assert mock.alpaca is not None
            cid = client_order_id_for(resting.signal_id)
            assert mock.alpaca.broker.by_client_order_id(cid).status == "canceled"
        finally:
            await mock.close()
        assert canceled["client_order_id"] == cid and canceled["status"] == "CANCELED"
        working = await redis.smembers(settings.keys.working_orders("alpaca"))
        assert not working

    asyncio.run(scenario())


def test_refused_or_missing_credentials_stop_with_a_config_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(alpaca_port=0, api_key=KEY, api_secret=SECRET)
        try:
            redis = fakeredis.FakeAsyncRedis()
            missing = make_settings(mock, alpaca_api_secret=Secret(""))
            with pytest.raises(ConfigError, match="ALPACA_API_SECRET"):
                await run(missing, asyncio.Event(), redis=redis)
            wrong = make_settings(mock, alpaca_api_secret=Secret("wrong"))
            await seed_market(redis, wrong, "FAKEPACA", "100")
            await redis.xadd(wrong.keys.signals(PARTITION), make_signal().to_fields())
            with pytest.raises(ConfigError, match="ALPACA_API_KEY"):
                await asyncio.wait_for(run(wrong, asyncio.Event(), redis=redis), 8)
            # The reconciliation at start, before any signal, is what the venue refused.
            assert not any(e["event"] == "intent" for e in await order_events(redis, wrong))
        finally:
            await mock.close()

    asyncio.run(scenario())
