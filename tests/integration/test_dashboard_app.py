"""The dashboard's Redis reads (incremental, bounded) on fakeredis, its token, and its server."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from typing import Any

import fakeredis
import pytest

from tests.venue_settings import two_venues
from tickpipe.common.names import Partition
from tickpipe.common.settings import Secret, Settings
from tickpipe.dashboard import reader
from tickpipe.dashboard.app import TOKEN_COOKIE, build_app
from tickpipe.dashboard.shell import DashboardServer, run

SETTINGS = Settings(namespace="dsh", symbols=("BTCUSDT",), instance="t")
P = Partition("binance", 0)
K = SETTINGS.keys
S = 1_000_000_000


def bar(ts: int, close: str, revision: int) -> dict[str, str]:
    return {"symbol": "BTCUSDT", "interval": "1s", "ts_open": str(ts), "open": "1", "high": "9",
            "low": "0.5", "close": close, "revision": str(revision), "final": "0"}  # fmt: skip


def test_chart_reads_only_entries_newer_than_the_ids_it_is_given() -> None:
    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        await r.xadd(K.bars(P, "1s"), bar(0, "2", 0))
        await r.xadd(K.bars(P, "1s"), bar(0, "3", 1))
        await r.xadd(
            K.trades(P), {"symbol": "BTCUSDT", "price": "3", "ts_event": "5", "side": "buy"}
        )
        intent = {"event": "intent", "symbol": "BTCUSDT", "side": "buy",
                  "ts_intent": str(S // 2), "client_order_id": "c1"}  # fmt: skip
        await r.xadd(K.orders("binance"), intent)
        first = await reader.read_chart(r, SETTINGS, "BTCUSDT", "1s")
        assert [(b.ts_open, b.close) for b in first.bars.values()] == [(0, 3.0)]
        assert first.trades == [(5, 3.0, "buy")] and first.intents == [(S // 2, "buy")]
        again = await reader.read_chart(r, SETTINGS, "BTCUSDT", "1s", first.ids)
        assert again.bars == {} and again.trades == [] and again.intents == []
        await r.xadd(K.bars(P, "1s"), bar(S, "4", 0))
        fill = {"event": "update", "symbol": "BTCUSDT", "side": "buy", "last_qty": "0.1",
                "last_price": "4", "ts_event": "7", "client_order_id": "c1"}  # fmt: skip
        await r.xadd(K.orders("binance"), fill)
        news = await reader.read_chart(r, SETTINGS, "BTCUSDT", "1s", again.ids)
        assert list(news.bars) == [S] and news.fills == [(7, 4.0, "buy")]
        assert news.ids["bars"] != first.ids["bars"]

    asyncio.run(go())


def test_orders_positions_book_and_health_reads() -> None:
    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        orders = K.orders("binance")
        await r.xadd(orders, {"event": "intent", "client_order_id": "a", "symbol": "BTCUSDT",
                              "side": "buy", "qty": "1"})  # fmt: skip
        await r.xadd(orders, {"event": "intent", "client_order_id": "b", "symbol": "BTCUSDT",
                              "side": "sell", "qty": "1"})  # fmt: skip
        await r.xadd(orders, {"event": "ack", "client_order_id": "a"})
        await r.xadd(orders, {"event": "rejected", "client_order_id": "b", "reason": "risk"})
        await r.xadd(orders, {"event": "update", "client_order_id": "a", "status": "FILLED",
                              "filled_qty": "1", "cum_quote": "5"})  # fmt: skip
        await r.xadd(orders, {"event": "instruments", "symbol": "BTCUSDT", "tick_size": "0.01"})
        rows = await reader.read_orders(r, SETTINGS)
        assert [(o["client_order_id"], o["state"]) for o in rows] == [
            ("b", "REJECTED"),
            ("a", "FILLED"),
        ]
        assert rows[1]["symbol"] == "BTCUSDT" and rows[0]["reason"] == "risk"
        await r.hset(K.positions("binance"), mapping={"BTCUSDT": "1", "BTCUSDT:realized_pnl": "2"})
        assert await reader.read_positions(r, SETTINGS) == {
            "BTCUSDT": {"position": "1", "realized_pnl": "2"}
        }
        assert await reader.read_book(r, SETTINGS, "BTCUSDT") == {"quote": {}, "book": {}}
        await r.xadd(K.quotes(P), {"symbol": "BTCUSDT", "bid_price": "1"})
        assert (await reader.read_book(r, SETTINGS, "BTCUSDT"))["quote"]["bid_price"] == "1"
        await r.set(K.health("trader", "x"), b'{"service":"trader","instance":"x","status":"ok"}')
        view = await reader.read_health_view(r, SETTINGS)
        assert view["health"][0]["status"] == "ok"
        assert {s["kind"] for s in view["streams"]} >= {"orders", "quotes"}
        latency = await reader.read_latency(r, SETTINGS)
        assert len(latency) == 5 and all(row["n"] == "0" for row in latency)

    asyncio.run(go())


def _no_redis(_: Any) -> Any:
    raise AssertionError("the layout needs no Redis")


def test_a_token_guards_every_request() -> None:
    app = build_app(SETTINGS, _no_redis, token="s3cret")
    client = app.server.test_client()
    assert client.get("/").status_code == 401
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    answer = client.get("/?token=s3cret")
    assert answer.status_code == 200
    assert TOKEN_COOKIE in answer.headers.get("Set-Cookie", "")
    assert client.get("/_dash-layout").status_code == 200  # the cookie is enough from now on
    fresh = app.server.test_client()
    assert fresh.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_without_a_token_the_page_is_open() -> None:
    client = build_app(SETTINGS, _no_redis).server.test_client()
    assert client.get("/").status_code == 200


def test_the_stage_serves_http_publishes_health_and_stops() -> None:
    settings = Settings(namespace="dsh", symbols=("BTCUSDT",), instance="t1",
                        dashboard_token=Secret("tok"))  # fmt: skip

    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        stop = asyncio.Event()
        ready: list[DashboardServer] = []
        task = asyncio.create_task(run(settings, stop, redis=r, port=0, on_ready=ready.append))
        for _ in range(200):
            if ready and await r.exists(K.health("dashboard", "t1")):
                break
            await asyncio.sleep(0.02)
        assert ready, "the dashboard did not start"
        url = ready[0].url

        def fetch(path: str) -> int:
            try:
                with urllib.request.urlopen(url + path, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert await asyncio.to_thread(fetch, "") == 401
        assert await asyncio.to_thread(fetch, "?token=tok") == 200
        assert ready[0].host == "127.0.0.1"
        stop.set()
        await asyncio.wait_for(task, 10)
        assert not await r.exists(K.health("dashboard", "t1"))

    asyncio.run(go())
    assert not [t for t in threading.enumerate() if t.name == "dashboard-http"]


def test_a_busy_port_is_a_configuration_error() -> None:
    import socket

    from tickpipe.common.errors import ConfigError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]

        async def go() -> None:
            await run(SETTINGS, asyncio.Event(), redis=fakeredis.FakeAsyncRedis(), port=port)

        with pytest.raises(ConfigError, match=f"--port {port}: 127.0.0.1:{port} is already in use"):
            asyncio.run(go())


def test_two_venues_show_every_venues_symbols_orders_and_positions() -> None:
    both = two_venues("dsh2")
    keys = both.keys
    assert reader.symbol_choices(both) == [
        ("binance · BTCUSDT", "binance:BTCUSDT"),
        ("alpaca · FAKEPACA", "alpaca:FAKEPACA"),
    ]
    one, symbol = reader.settings_of(both, "alpaca:FAKEPACA")
    assert (one.venue, one.symbols, symbol) == ("alpaca", ("FAKEPACA",), "FAKEPACA")

    async def go() -> None:
        r = fakeredis.FakeAsyncRedis()
        binance = {"event": "intent", "client_order_id": "b1", "symbol": "BTCUSDT"}
        alpaca = {"event": "intent", "client_order_id": "a1", "symbol": "FAKEPACA"}
        await r.xadd(keys.orders("binance"), binance, id="1-0")  # type: ignore[arg-type]
        await r.xadd(keys.orders("alpaca"), alpaca, id="2-0")  # type: ignore[arg-type]
        await r.hset(keys.positions("binance"), "BTCUSDT:position", "0.001")
        await r.hset(keys.positions("alpaca"), "FAKEPACA:position", "-1")
        orders, positions = await reader.read_trading(r, both)
        assert [(o["client_order_id"], o["symbol"]) for o in orders] == [
            ("a1", "alpaca:FAKEPACA"),
            ("b1", "binance:BTCUSDT"),
        ]
        assert positions == {
            "binance:BTCUSDT": {"position": "0.001"},
            "alpaca:FAKEPACA": {"position": "-1"},
        }

    asyncio.run(go())
