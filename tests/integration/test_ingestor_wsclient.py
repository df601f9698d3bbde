"""The ingestor's WebSocket seam behaves the same with picows and websockets.

Each test runs once per client (``conftest.py``) against a websockets server: what a session
receives (text as ``str``, binary as ``bytes``), what it sends, how a close from the venue, a
refused handshake and a bad URL surface (through the seam's exception tuples), and which library
actually opened the connection.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.integration.ingestor_support import entries, fast_backoff, running, venue
from tests.waits import until
from tickpipe.common.errors import ConfigError
from tickpipe.common.settings import Settings
from tickpipe.common.tls import trust_ca_file
from tickpipe.ingestor import wsclient
from tickpipe.ingestor.shell import Ingestor
from tickpipe.ingestor.slot import WsOptions
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.tls import generate


async def echo_then_close(ws: ServerConnection) -> None:
    await ws.send("text frame")
    await ws.send(b"\x81\xa4binary")
    got = await ws.recv()
    await ws.send(f"echo {got!r}")
    await ws.close(4001, "bye now")


def test_the_chosen_client_opens_the_connection_and_reads_text_and_binary(
    ws_client: str,
) -> None:
    async def scenario() -> None:
        async with venue(echo_then_close) as url, WsOptions().connect(url) as ws:
            assert type(ws).__module__.split(".")[0] == ws_client
            assert await ws.recv() == "text frame"
            assert await ws.recv() == b"\x81\xa4binary"
            await ws.send("hello")
            assert await ws.recv() == "echo 'hello'"
            with pytest.raises(wsclient.ConnectionClosed) as closed:
                await ws.recv()
            assert ws.close_code == 4001 and ws.close_reason == "bye now"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

    asyncio.run(scenario())


def test_iterating_ends_on_a_normal_close_and_raises_on_an_abnormal_one(
    ws_client: str,
) -> None:
    async def scenario() -> None:
        async def close_normally(ws: ServerConnection) -> None:
            await ws.send("one")
            await ws.close(1000, "done")

        async with venue(close_normally) as url, WsOptions().connect(url) as ws:
            assert [m async for m in ws] == ["one"]
            assert ws.close_code == 1000

        async def abort(ws: ServerConnection) -> None:
            await ws.send("one")
            assert ws.transport is not None
            ws.transport.abort()

        async with venue(abort) as url, WsOptions().connect(url) as ws:
            got: list[Any] = []
            with pytest.raises(wsclient.ConnectionClosed) as lost:
                async for message in ws:
                    got.append(message)
            assert got == ["one"]
            assert lost.value.rcvd is None

    asyncio.run(scenario())


def test_a_refused_handshake_carries_status_and_headers(ws_client: str) -> None:
    async def scenario() -> None:
        def refuse(_ws: ServerConnection, _request: Request) -> Response:
            headers = Headers({"Retry-After": "7", "Content-Length": "0"})
            return Response(429, "Too Many Requests", headers, b"")

        async with venue(echo_then_close, process_request=refuse) as url:
            with pytest.raises(wsclient.InvalidStatus) as refused:
                async with WsOptions().connect(url):
                    pass
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers.get("Retry-After") == "7"
        assert isinstance(refused.value, wsclient.WebSocketException)

    asyncio.run(scenario())


def test_a_message_over_the_cap_closes_with_1009(ws_client: str) -> None:
    async def scenario() -> None:
        async def too_big(ws: ServerConnection) -> None:
            await ws.send("x" * 2048)
            await ws.wait_closed()

        async with venue(too_big) as url, WsOptions(max_frame_bytes=1024).connect(url) as ws:
            with pytest.raises(wsclient.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.sent is not None and closed.value.sent.code == 1009
        assert not closed.value.rcvd_then_sent

    asyncio.run(scenario())


def test_pings_are_answered_and_a_mute_peer_is_closed_with_1011(ws_client: str) -> None:
    async def scenario() -> None:
        client_gone = asyncio.Event()

        async def ping_then_go_mute(ws: ServerConnection) -> None:
            pong = await ws.ping()
            await asyncio.wait_for(pong, 10)  # the client answered
            await ws.send("ponged")
            assert ws.transport is not None
            ws.transport.pause_reading()  # from now on the client's pings go unanswered
            await client_gone.wait()
            ws.transport.abort()

        options = WsOptions(ping_interval_s=0.1, ping_timeout_s=0.3, close_timeout_s=0.5)
        async with venue(ping_then_go_mute) as url:
            async with options.connect(url) as ws:
                assert await ws.recv() == "ponged"
                with pytest.raises(wsclient.ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 30)
            client_gone.set()
        assert closed.value.sent is not None and closed.value.sent.code == 1011
        assert "ping" in closed.value.sent.reason

    asyncio.run(scenario())


def test_an_unknown_or_missing_client_is_a_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="must be one of picows, websockets"):
        Ingestor(Settings(ws_client="aiohttp", channels=("trade",)))
    monkeypatch.setattr(wsclient, "picows_client", None)
    assert wsclient.installed() == ("websockets",)
    with pytest.raises(ConfigError, match=r"picows is not installed \(pip install picows"):
        Ingestor(Settings(ws_client="picows", channels=("trade",)))


def test_the_setting_reaches_the_connections_options() -> None:
    ingestor = Ingestor(Settings(ws_client="websockets", channels=("trade",)))
    assert ingestor.options.client == "websockets"
    assert Ingestor(Settings(channels=("trade",))).options.client == ""


def test_wss_to_the_mock_with_its_ca_ingests_and_without_it_is_refused(
    ws_client: str, tmp_path: Path
) -> None:
    tls = generate(tmp_path / "tls", [], datetime.datetime.now(datetime.UTC))

    def ingestor_for(ws_url: str) -> Ingestor:
        settings = Settings(
            namespace="wss",
            symbols=("BTCUSDT",),
            binance_ws_url=ws_url,
            instance="wss-1",
            health_interval_s=0.05,
            ingestor_journal_max_mb=0,
            channels=("trade",),
        )
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        return Ingestor(settings, redis=redis, backoff_factory=fast_backoff)

    async def scenario() -> None:
        mock = await start_mock(binance_port=0, trades_per_s=50, symbols=["BTCUSDT"], tls=tls)
        async with mock:
            assert mock.ws_url.startswith("wss://")
            trust_ca_file(None)  # the system store only: the mock's certificate is unknown
            refused = ingestor_for(mock.ws_url)
            async with running(refused):
                await until(lambda: refused.stats.reconnects >= 2)
            assert refused.stats.frames_received == 0
            assert "CERTIFICATE_VERIFY_FAILED" in refused.stats.last_error
            trust_ca_file(str(tls.ca))
            try:
                ingestor = ingestor_for(mock.ws_url)
                async with running(ingestor):
                    await until(lambda: ingestor.stats.frames_received >= 10)
            finally:
                trust_ca_file(None)
        got = await entries(ingestor.redis, "wss:{binance:0}:raw")
        assert sum(f.kind == "ws" for f in got) >= 10

    asyncio.run(scenario())
