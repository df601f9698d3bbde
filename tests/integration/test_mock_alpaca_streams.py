"""Integration tests: raw WebSocket clients on the Alpaca mock's market-data streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.mock_support import Scenario, run_scenario
from tickpipe.mock_ws import MockExchange, read_ground_truth

AUTH = {"action": "auth", "key": "mock-key", "secret": "mock-secret"}
MSGPACK = {"Content-Type": "application/msgpack"}


def run(scenario: Scenario, **kwargs: Any) -> None:
    # AAPL trades at any hour here (the mock's default: the NYSE session).
    mock_kw = {"alpaca_hours": "always", "alpaca_port": 0, "trades_per_s": 40.0} | kwargs
    run_scenario(scenario, timeout_s=8, **mock_kw)


def url(mock: MockExchange, path: str) -> str:
    assert mock.alpaca_data_url is not None
    return mock.alpaca_data_url + path


async def recv(ws: ClientConnection) -> list[dict[str, Any]]:
    frame = await asyncio.wait_for(ws.recv(), 3.0)
    decoded = msgpack.unpackb(frame) if isinstance(frame, bytes) else orjson.loads(frame)
    assert isinstance(decoded, list), decoded
    return decoded


async def recv_until(ws: ClientConnection, accept: Callable[[dict[str, Any]], bool]) -> Any:
    while True:
        for message in await recv(ws):
            if accept(message):
                return message


async def login(ws: ClientConnection) -> None:
    assert await recv(ws) == [{"T": "success", "msg": "connected"}]
    await ws.send(orjson.dumps(AUTH).decode())
    assert await recv(ws) == [{"T": "success", "msg": "authenticated"}]


def test_json_mode_text_frames_with_batched_trades_and_quotes(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def scenario(mock: MockExchange) -> None:
        async with connect(url(mock, "/v2/test")) as ws:
            await login(ws)
            await ws.send('{"action":"subscribe","trades":["FAKEPACA"],"quotes":["FAKEPACA"]}')
            [sub] = await recv(ws)
            assert sub["T"] == "subscription" and sub["corrections"] == ["FAKEPACA"]
            frame = await asyncio.wait_for(ws.recv(), 3.0)
            assert isinstance(frame, str)
            batch = orjson.loads(frame)
            assert {m["T"] for m in batch} == {"t", "q"} and len(batch) >= 2
            trade = next(m for m in batch if m["T"] == "t")
            assert trade["S"] == "FAKEPACA" and trade["t"].endswith("Z")
            await ws.send('{"action":"unsubscribe","trades":["FAKEPACA"]}')
            sub = await recv_until(ws, lambda m: m["T"] == "subscription")
            assert sub["trades"] == [] and sub["corrections"] == []
            assert sub["quotes"] == ["FAKEPACA"]
        trades = read_ground_truth(truth).events("alpaca_trade_sent")
        assert trades and trades[0]["symbol"] == "FAKEPACA" and trades[0]["feed"] == "/v2/test"

    run(scenario, ground_truth_path=str(truth))


def test_msgpack_mode_binary_frames_with_timestamp_extension() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(url(mock, "/v2/iex"), additional_headers=MSGPACK) as ws:
            first = await asyncio.wait_for(ws.recv(), 3.0)
            assert isinstance(first, bytes)
            assert msgpack.unpackb(first) == [{"T": "success", "msg": "connected"}]
            await ws.send(msgpack.packb(AUTH))
            assert await recv(ws) == [{"T": "success", "msg": "authenticated"}]
            await ws.send(msgpack.packb({"action": "subscribe", "trades": ["AAPL"]}))
            [sub] = await recv(ws)
            assert sub["trades"] == ["AAPL"] and sub["quotes"] == []
            trade = await recv_until(ws, lambda m: m["T"] == "t")
            assert trade["S"] == "AAPL" and isinstance(trade["t"], msgpack.Timestamp)
            assert isinstance(trade["s"], int) and trade["s"] >= 1

    run(scenario)


def test_crypto_stream_with_orderbook_snapshot_then_updates() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(url(mock, "/v1beta3/crypto/us")) as ws:
            await login(ws)
            await ws.send('{"action":"subscribe","trades":["BTC/USD"]}')
            await recv_until(ws, lambda m: m["T"] == "subscription")
            trade = await recv_until(ws, lambda m: m["T"] == "t")
            assert trade["S"] == "BTC/USD" and trade["tks"] in ("B", "S") and "x" not in trade
            await ws.send('{"action":"subscribe","orderbooks":["BTC/USD"]}')
            await recv_until(ws, lambda m: m["T"] == "subscription")
            snapshot = await recv_until(ws, lambda m: m["T"] == "o")
            # the first message is the whole book (40 levels a side), not a top of book
            assert snapshot["r"] is True and len(snapshot["b"]) == len(snapshot["a"]) == 40
            bids, asks = [b["p"] for b in snapshot["b"]], [a["p"] for a in snapshot["a"]]
            assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
            assert bids[0] < asks[0] and len(set(bids)) == len(set(asks)) == 40
            update = await recv_until(ws, lambda m: m["T"] == "o")
            assert update["r"] is False

    run(scenario)


def test_header_auth_and_connection_limit() -> None:
    headers = {"APCA-API-KEY-ID": "mock-key", "APCA-API-SECRET-KEY": "mock-secret"}

    async def scenario(mock: MockExchange) -> None:
        async with connect(url(mock, "/v2/test"), additional_headers=headers) as first:
            assert await recv(first) == [{"T": "success", "msg": "connected"}]
            assert await recv(first) == [{"T": "success", "msg": "authenticated"}]
            async with connect(url(mock, "/v2/test")) as second:
                assert await recv(second) == [{"T": "success", "msg": "connected"}]
                await second.send(orjson.dumps(AUTH).decode())
                assert await recv(second) == [
                    {"T": "error", "code": 406, "msg": "connection limit exceeded"}
                ]
                await asyncio.wait_for(second.wait_closed(), 3.0)
                assert second.close_code == 1008
            async with connect(url(mock, "/v2/iex")) as other_feed:
                await login(other_feed)

    run(scenario)


def test_auth_timeout_closes_with_404() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.alpaca is not None
        mock.alpaca.auth_timeout_s = 0.3
        async with connect(url(mock, "/v2/test")) as ws:
            assert await recv(ws) == [{"T": "success", "msg": "connected"}]
            assert await recv(ws) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
            await asyncio.wait_for(ws.wait_closed(), 3.0)

    run(scenario)


def test_errors_before_and_after_auth_keep_the_connection() -> None:
    async def scenario(mock: MockExchange) -> None:
        async with connect(url(mock, "/v2/iex")) as ws:
            assert await recv(ws) == [{"T": "success", "msg": "connected"}]
            await ws.send('{"action":"subscribe","trades":["AAPL"]}')
            assert (await recv(ws))[0]["code"] == 401
            await ws.send('{"action":"auth","key":"mock-key","secret":"wrong"}')
            assert (await recv(ws))[0]["code"] == 402
            await ws.send(orjson.dumps(AUTH).decode())
            assert (await recv(ws))[0]["msg"] == "authenticated"
            await ws.send(orjson.dumps(AUTH).decode())
            assert (await recv(ws))[0]["code"] == 403
            await ws.send("not json")
            assert (await recv(ws))[0]["code"] == 400
            await ws.send('{"action":"subscribe","orderbooks":["AAPL"]}')
            assert (await recv(ws))[0]["code"] == 410

    run(scenario)


def test_sip_without_entitlement_is_409() -> None:
    async def scenario(mock: MockExchange) -> None:
        assert mock.alpaca is not None
        mock.alpaca.entitled_feeds = ("/v2/iex", "/v2/test")
        async with connect(url(mock, "/v2/sip")) as ws:
            assert await recv(ws) == [{"T": "success", "msg": "connected"}]
            await ws.send(orjson.dumps(AUTH).decode())
            assert (await recv(ws))[0]["code"] == 409
            await asyncio.wait_for(ws.wait_closed(), 3.0)

    run(scenario)


def test_injected_status_correction_and_slow_client() -> None:
    async def scenario(mock: MockExchange) -> None:
        alpaca = mock.alpaca
        assert alpaca is not None
        async with connect(url(mock, "/v2/test")) as ws:
            await login(ws)
            await ws.send('{"action":"subscribe","trades":["FAKEPACA"],"statuses":["FAKEPACA"]}')
            await recv_until(ws, lambda m: m["T"] == "subscription")
            await recv_until(ws, lambda m: m["T"] == "t")
            async with aiohttp.ClientSession() as http:
                for kind in ("status", "correction"):
                    response = await http.post(
                        f"{mock.alpaca_rest_url}/_mock/alpaca/inject",
                        json={"kind": kind, "symbol": "FAKEPACA"},
                    )
                    assert response.status == 200
            await recv_until(ws, lambda m: m["T"] == "s")
            correction = await recv_until(ws, lambda m: m["T"] == "c")
            assert correction["S"] == "FAKEPACA"
            alpaca.outbox_limit = 3
            burst = alpaca.market.inject("status", "FAKEPACA", 0)
            for _ in range(10):
                alpaca.publish([burst])
            error = await recv_until(ws, lambda m: m["T"] == "error")
            assert error == {"T": "error", "code": 407, "msg": "slow client"}
            try:
                await asyncio.wait_for(ws.recv(), 3.0)
            except ConnectionClosed:
                pass
            assert ws.close_code == 1008

    run(scenario)
