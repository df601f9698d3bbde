"""Integration tests of the ingestor on the Alpaca venue of the in-process mock (fakeredis)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import msgpack
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.integration.ingestor_support import running
from tests.rawread import rawframes
from tests.waits import until
from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import ConfigError
from tickpipe.common.names import Partition, shard_for
from tickpipe.common.schema import RawFrame
from tickpipe.common.settings import Secret, Settings
from tickpipe.ingestor.control import request_subscription_change
from tickpipe.ingestor.shell import Ingestor
from tickpipe.mock_ws import MockExchange, read_ground_truth, start_mock

KEY, SECRET = "alpaca-key", "alpaca-secret"
HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}


def fast_backoff() -> Backoff:
    return Backoff(base_s=0.05, cap_s=0.2)


def settings_for(mock: MockExchange, **overrides: Any) -> Settings:
    assert mock.alpaca_data_url is not None and mock.alpaca_trading_url is not None
    values: dict[str, Any] = {
        "namespace": "ita",
        "venue": "alpaca",
        "symbols": ("FAKEPACA",),
        "alpaca_data_url": mock.alpaca_data_url,
        "alpaca_feed": "test",
        "alpaca_trading_url": mock.alpaca_trading_url,
        "alpaca_rest_url": mock.alpaca_rest_url,
        "alpaca_api_key": Secret(KEY),
        "alpaca_api_secret": Secret(SECRET),
        "instance": "alpaca-test",
        "health_interval_s": 0.1,
        "ingestor_journal_max_mb": 0,
        **overrides,
    }
    return Settings(**values)


def decode(frame: RawFrame) -> Any:
    if frame.kind == "ws-binary":
        return msgpack.unpackb(base64.b64decode(frame.data), raw=False)
    assert frame.kind == "ws"
    return orjson.loads(frame.data)


async def entries(redis: Any, key: str) -> list[RawFrame]:
    return rawframes(await redis.xrange(key))


def run_ingestor(
    settings_overrides: dict[str, Any],
    body: Callable[[Ingestor, MockExchange, Settings], Any],
    **mock_kwargs: Any,
) -> tuple[Ingestor, Settings, dict[str, list[RawFrame]]]:
    async def scenario() -> tuple[Ingestor, Settings, dict[str, list[RawFrame]]]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(
            alpaca_hours="always",  # AAPL trades at any hour here (default: NYSE session)
            alpaca_port=0,
            api_key=KEY,
            api_secret=SECRET,
            trades_per_s=40.0,
            **mock_kwargs,
        )
        try:
            settings = settings_for(mock, **settings_overrides)
            ingestor = Ingestor(settings, redis=redis)
            stop = asyncio.Event()
            task = asyncio.create_task(ingestor.run(stop))
            try:
                await body(ingestor, mock, settings)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
        finally:
            await mock.close()
        keys = settings.keys
        streams = {str(p): keys.raw(p) for p in settings.partitions()}
        streams["private"] = keys.private_raw("alpaca")
        out = {name: await entries(redis, key) for name, key in streams.items()}
        return ingestor, settings, out

    return asyncio.run(scenario())


async def wait_trades(ingestor: Ingestor, mock: MockExchange, settings: Settings) -> None:
    await until(lambda: ingestor.stats.frames_received >= 20)


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_trades_and_quotes_land_in_raw_per_encoding(encoding: str, tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    _, _, raw = run_ingestor(
        {"alpaca_encoding": encoding}, wait_trades, ground_truth_path=str(truth)
    )
    frames = raw["alpaca:0"]
    assert frames[0].kind == "marker" and orjson.loads(frames[0].data)["event"] == "connect"
    assert frames[-1].kind == "marker" and orjson.loads(frames[-1].data)["event"] == "disconnect"
    data = [f for f in frames if f.kind != "marker"]
    expected_kind = "ws-binary" if encoding == "msgpack" else "ws"
    assert {f.kind for f in data} == {expected_kind}
    assert [f.seq for f in data] == list(range(1, len(data) + 1))
    messages = [m for f in data for m in decode(f)]
    assert messages[0] == {"T": "success", "msg": "connected"}
    assert messages[1] == {"T": "success", "msg": "authenticated"}
    assert messages[2]["T"] == "subscription" and messages[2]["trades"] == ["FAKEPACA"]
    types = {m["T"] for m in messages[3:]}
    assert {"t", "q"} <= types
    trade = next(m for m in messages if m["T"] == "t")
    assert trade["S"] == "FAKEPACA"
    if encoding == "msgpack":
        assert isinstance(trade["t"], msgpack.Timestamp)
    else:
        assert isinstance(trade["t"], str) and trade["t"].endswith("Z")
    # Every trade the venue sent on this connection is in raw, in order, and decodes back.
    sent = read_ground_truth(truth).events("alpaca_trade_sent")
    got = [m for m in messages if m["T"] == "t"]
    assert len(got) >= 1
    assert [m["i"] for m in got] == [e["trade_id"] for e in sent][: len(got)]
    for message, event in zip(got, sent, strict=False):
        assert str(message["p"]) == str(event["price"])
        stamp = message["t"]
        ns = stamp.to_unix_nano() if isinstance(stamp, msgpack.Timestamp) else None
        assert ns is None or ns == event["t"]


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_trade_updates_land_in_private_raw_after_a_rest_order(encoding: str) -> None:
    async def body(ingestor: Ingestor, mock: MockExchange, settings: Settings) -> None:
        await until(lambda: ingestor.stats.private_subscribed)
        order = {"symbol": "FAKEPACA", "qty": "1", "side": "buy", "type": "market",
                 "time_in_force": "day", "client_order_id": "it-alpaca-1"}  # fmt: skip
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            async with http.post(f"{mock.alpaca_rest_url}/v2/orders", json=order) as response:
                assert response.status == 200, await response.text()
        key = settings.keys.private_raw("alpaca")

        async def fills() -> int:
            found = 0
            for frame in await entries(ingestor.redis, key):
                if frame.kind != "marker":
                    message = decode(frame)
                    if message.get("stream") == "trade_updates":
                        found += message["data"]["event"] == "fill"
            return found

        await until(lambda: _at_least(fills, 1), 30, "a fill in private raw")

    _, _, raw = run_ingestor({"alpaca_encoding": encoding}, body)
    messages = [decode(f) for f in raw["private"] if f.kind != "marker"]
    assert messages[0] == {
        "stream": "authorization",
        "data": {"status": "authorized", "action": "authenticate"},
    }
    assert messages[1] == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    updates = [m["data"] for m in messages if m.get("stream") == "trade_updates"]
    assert updates[0]["order"]["client_order_id"] == "it-alpaca-1"
    assert {u["event"] for u in updates} >= {"new", "fill"}
    # The venue sends JSON in binary frames (kept as text) or msgpack (kept as base64).
    kind = "ws-binary" if encoding == "msgpack" else "ws"
    assert {f.kind for f in raw["private"] if f.kind != "marker"} == {kind}


def test_wrong_key_is_a_config_error_quickly() -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(
            alpaca_hours="always", alpaca_port=0, api_key="other-key", api_secret=SECRET
        )
        try:
            ingestor = Ingestor(settings_for(mock), redis=redis)
            # A refused key ends the run (a retrying ingestor would hit the deadline instead).
            with pytest.raises(ConfigError, match="ALPACA_API_KEY"):
                await asyncio.wait_for(ingestor.run(asyncio.Event()), 30)
        finally:
            await mock.close()

    asyncio.run(scenario())


def test_missing_key_is_a_config_error() -> None:
    settings = Settings(venue="alpaca", symbols=("FAKEPACA",))
    with pytest.raises(ConfigError, match="ALPACA_API_SECRET"):
        Ingestor(settings)


def test_two_shards_send_control_to_the_first_partition_and_data_to_its_own() -> None:
    symbols = ("ETH/USD", "BTC/USD")  # shards 0 and 1; the mock trades only BTC/USD

    async def body(ingestor: Ingestor, mock: MockExchange, settings: Settings) -> None:
        await until(lambda: ingestor.stats.frames_received >= 20)

    assert [shard_for(s, 2) for s in symbols] == [0, 1]
    _, _, raw = run_ingestor(
        {"alpaca_feed": "crypto", "symbols": symbols, "shards": 2, "alpaca_encoding": "msgpack"},
        body,
    )
    first = [m for f in raw["alpaca:0"] if f.kind != "marker" for m in decode(f)]
    assert [m["T"] for m in first] == ["success", "success", "subscription"]
    assert first[2]["orderbooks"] == ["BTC/USD", "ETH/USD"]
    second = [f for f in raw["alpaca:1"] if f.kind != "marker"]
    assert [f.seq for f in second] == list(range(1, len(second) + 1))
    messages = [m for f in second for m in decode(f)]
    assert {m["T"] for m in messages} >= {"t", "q", "o"}
    assert {m["S"] for m in messages} == {"BTC/USD"}
    trade = next(m for m in messages if m["T"] == "t")
    assert trade["tks"] in ("B", "S")
    for name in ("alpaca:0", "alpaca:1"):
        events = [orjson.loads(f.data)["event"] for f in raw[name] if f.kind == "marker"]
        assert events[0] == "connect" and events[-1] == "disconnect"


def test_connection_limit_waits_until_the_other_session_closes() -> None:
    async def scenario() -> tuple[Ingestor, list[RawFrame]]:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mock = await start_mock(
            alpaca_hours="always", alpaca_port=0, api_key=KEY, api_secret=SECRET
        )
        try:
            settings = settings_for(mock, alpaca_encoding="json")
            holder = await connect(settings.alpaca_data_stream_url(), additional_headers=HEADERS)
            ingestor = Ingestor(settings, redis=redis, backoff_factory=fast_backoff)
            async with running(ingestor):
                await until(lambda: "connection limit" in ingestor.stats.last_error)
                await holder.close()
                await until(lambda: ingestor.stats.frames_received >= 15)
        finally:
            await mock.close()
        return ingestor, await entries(redis, settings.keys.raw(Partition("alpaca", 0)))

    ingestor, frames = asyncio.run(scenario())
    assert ingestor.stats.reconnects >= 1
    texts = [f.data for f in frames if f.kind == "ws"]
    assert any('"code":406' in t for t in texts)
    assert any('"T":"t"' in t for t in texts)


def test_symbol_limit_is_marked_and_the_connection_carries_on() -> None:
    symbols = tuple(f"S{n:02d}" for n in range(31))  # the mock's iex plan allows 30

    async def body(ingestor: Ingestor, mock: MockExchange, settings: Settings) -> None:
        await until(lambda: ingestor.stats.frames_received >= 3)
        assert ingestor.stats.connections_up == 2

    _, _, raw = run_ingestor(
        {"alpaca_feed": "iex", "symbols": symbols, "alpaca_encoding": "json"}, body
    )
    first = str(next(iter(Settings(venue="alpaca", symbols=symbols).partitions())))
    markers = [orjson.loads(f.data) for f in raw[first] if f.kind == "marker"]
    refused = [m for m in markers if m["event"] == "subscription_refused"]
    assert refused and refused[0]["code"] == 405 and "symbol limit" in refused[0]["error"]
    assert [m["event"] for m in markers][-1] == "disconnect"
    assert sum(m["event"] == "connect" for m in markers) == 1  # never reconnected


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


def test_runtime_subscribe_through_the_control_stream() -> None:
    async def body(ingestor: Ingestor, mock: MockExchange, settings: Settings) -> None:
        await until(lambda: ingestor.stats.frames_received >= 3)  # subscribed to ETH/USD only
        assert ingestor.redis is not None
        await request_subscription_change(ingestor.redis, settings, "subscribe", "BTC/USD")
        key = settings.keys.raw(Partition("alpaca", 1))

        async def trades() -> int:
            found = [m for f in await entries(ingestor.redis, key) if f.kind != "marker"
                     for m in decode(f) if m["T"] == "t"]  # fmt: skip
            return len(found)

        # a bound for a loaded machine: the wait ends as soon as the trades are there
        await until(lambda: _at_least(trades, 3), 30, "BTC/USD trades after subscribing")

    _, _, raw = run_ingestor({"alpaca_feed": "crypto", "symbols": ("ETH/USD",), "shards": 2}, body)
    messages = [m for f in raw["alpaca:0"] if f.kind != "marker" for m in decode(f)]
    subscriptions = [m for m in messages if m["T"] == "subscription"]
    assert subscriptions[0]["trades"] == ["ETH/USD"]
    assert subscriptions[-1]["trades"] == ["BTC/USD", "ETH/USD"]
    assert not any(m.get("S") == "BTC/USD" for m in messages)
