"""The blast server sends each connection the trades of its own streams, paced or not.

In process, on a loopback port: one client names its stream in the URL, another opens a bare
``/stream`` and subscribes by message while held; after the release each receives exactly its
symbols' trades, ids rising from 1, and in paced mode the server logs when it wrote each frame.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve

from bench.blast import BlastServer

SYMBOLS = ("BTCUSDT", "ETHUSDT", "S0003USDT")
COUNT = 30  # 10 trades per symbol, round-robin: frame n is trade 1 + n // 3 of SYMBOLS[n % 3]


async def _receive(ws: ClientConnection, frames: int) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    while len(out) < frames:
        message = orjson.loads(await ws.recv())
        if "data" in message:
            out.append((message["data"]["s"], message["data"]["t"]))
    return out


def _events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _serve_two_clients(events: Path, rate: float) -> tuple[list[Any], list[Any]]:
    paced = {"rate": rate} if rate else {}
    feed = BlastServer(COUNT, symbols=SYMBOLS, events=events, hold=True, **paced)
    async with serve(feed.handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}/stream"
        try:
            async with (
                connect(f"{url}?streams=btcusdt@trade") as by_url,
                connect(url) as by_message,
                asyncio.timeout(30),
            ):
                request = {"method": "SUBSCRIBE", "params": ["ethusdt@trade", "s0003usdt@trade"]}
                await by_message.send(orjson.dumps({**request, "id": 7}).decode())
                answer = orjson.loads(await by_message.recv())
                assert answer == {"result": None, "id": 7}  # sent once the symbols are added
                feed.release()
                first = await _receive(by_url, COUNT // 3)
                second = await _receive(by_message, 2 * COUNT // 3)
        finally:
            feed.release()  # a held connection would keep the server from closing
    return first, second


def test_each_connection_gets_its_streams_trades_once(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    first, second = asyncio.run(_serve_two_clients(events, rate=0.0))
    assert first == [("BTCUSDT", n) for n in range(1, 11)]
    assert sorted(second) == sorted((s, n) for s in SYMBOLS[1:] for n in range(1, 11))
    # Nothing else was sent: each connection's whole count is its symbols' trades.
    done = [e["frames"] for e in _events(events) if e["ev"] == "sent_all"]
    assert sorted(done) == [10, 20]


def test_paced_feed_logs_when_it_wrote_each_trade(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    first, second = asyncio.run(_serve_two_clients(events, rate=300.0))
    sent = {
        (SYMBOLS[index % 3], 1 + index // 3): at
        for e in _events(events)
        if e["ev"] == "sent_all"
        for index, at in e["sent"]
    }
    # Every trade received was timed, once, and each connection wrote in order of time.
    assert sorted(sent) == sorted(first + second)
    for received in (first, second):
        times = [sent[key] for key in received]
        assert times == sorted(times)
