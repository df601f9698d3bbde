"""Integration tests: blast mode, read by a raw socket client that parses frame headers."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path

import orjson

from tickpipe.mock_ws import read_ground_truth, start_mock


def read_frames(port: int, path: str, seconds: float) -> tuple[list[bytes], float]:
    """Upgrade by hand, then read text frames for ``seconds``; keep every 1000th and the last."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    assert buf.startswith(b"HTTP/1.1 101")
    buf = buf.split(b"\r\n\r\n", 1)[1]
    kept: list[bytes] = []
    frames, pos, last = 0, 0, b""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        buf = buf[pos:] + sock.recv(1 << 20)
        pos = 0
        while len(buf) - pos >= 2:
            length, head = buf[pos + 1] & 0x7F, 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            if len(buf) - pos < head + length:
                break
            if buf[pos] == 0x81:
                last = buf[pos + head : pos + head + length]
                if frames % 1000 == 0:
                    kept.append(last)
                frames += 1
            pos += head + length
    elapsed = time.perf_counter() - started
    sock.close()
    return [*kept, last], frames / elapsed


def test_blast_sends_contiguous_trades_fast(tmp_path: Path) -> None:
    gt = tmp_path / "truth.jsonl"

    async def main() -> None:
        mock = await start_mock(blast=True, ground_truth_path=str(gt))
        try:
            kept, rate = await asyncio.to_thread(
                read_frames, mock.binance_port, "/ws/btcusdt@trade", 1.0
            )
        finally:
            await mock.close()
        trades = [orjson.loads(f) for f in kept]
        assert all(t["e"] == "trade" and t["s"] == "BTCUSDT" for t in trades)
        ids = [t["t"] for t in trades[:-1]]
        assert ids == [1 + 1000 * i for i in range(len(ids))]  # contiguous from 1
        assert rate > 20_000, rate  # >= 100k/s on an idle core; loose for shared CI

    asyncio.run(main())
    (summary,) = read_ground_truth(gt).events("blast")
    assert summary["frames"] >= summary["last_ids"][0] > 20_000


def test_blast_rate_paces_and_combined_frames_are_wrapped() -> None:
    async def main() -> None:
        mock = await start_mock(blast=True, blast_rate=2000.0)
        try:
            kept, rate = await asyncio.to_thread(
                read_frames, mock.binance_port, "/stream?streams=ethusdt@trade", 1.0
            )
        finally:
            await mock.close()
        assert 1000 < rate < 3000, rate
        last = orjson.loads(kept[-1])
        assert last["stream"] == "ethusdt@trade" and last["data"]["s"] == "ETHUSDT"

    asyncio.run(main())


def test_only_the_named_symbols_are_blasted_the_others_trade_in_the_market(
    tmp_path: Path,
) -> None:
    from websockets.asyncio.client import connect

    gt = tmp_path / "truth.jsonl"

    async def main() -> dict[str, list[int]]:
        mock = await start_mock(
            blast=True,
            blast_rate=3000.0,
            blast_symbols=["BTCUSDT"],
            trades_per_s=50.0,
            ground_truth_path=str(gt),
        )
        ids: dict[str, list[int]] = {"BTCUSDT": [], "ETHUSDT": []}
        url = f"{mock.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade/ethusdt@bookTicker"
        try:
            async with connect(url, max_queue=None) as ws:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while len(ids["ETHUSDT"]) < 5 or len(ids["BTCUSDT"]) < 3000:
                    assert loop.time() < deadline, {k: len(v) for k, v in ids.items()}
                    frame = orjson.loads(await ws.recv())
                    if frame["stream"].endswith("@trade"):
                        ids[frame["data"]["s"]].append(frame["data"]["t"])
        finally:
            await mock.close()
        return ids

    ids = asyncio.run(main())
    assert ids["BTCUSDT"][:3000] == list(range(1, 3001))  # blast: contiguous from 1
    truth = read_ground_truth(gt)
    sent = [e for e in truth.events("trade_sent")]
    assert sent and {e["symbol"] for e in sent} == {"ETHUSDT"}  # the market's trades
    assert set(ids["ETHUSDT"]) <= {e["trade_id"] for e in sent}


def test_blast_symbols_need_blast_and_must_be_listed() -> None:
    from tests.mock_cli import run_mock

    for args, message in (
        (["--blast-symbols", "BTCUSDT"], "--blast-symbols needs --blast"),
        (["--blast", "--blast-symbols", "DOGEUSDT"], "DOGEUSDT: not in --symbols"),
    ):
        done = run_mock("--binance-port", "0", *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
