"""Integration test: unmodified third-party clients reach the mock over TLS as their users do.

Each client runs in its own process with the mock's CA file in ``SSL_CERT_FILE`` (OpenSSL,
aiohttp, websockets) and ``REQUESTS_CA_BUNDLE`` (requests), the way a user trusts a private CA,
and prints what it got as JSON; the test compares that with the mock's own state. The
pipeline's side (``TICKPIPE_CA_FILE``) is checked with the stages' own connection helpers.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.mock_cli import mock_env, mock_process
from tickpipe.common import tls as client_tls
from tickpipe.common.errors import ConfigError
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.tls import TlsFiles, generate


def make_tls(tmp_path: Path) -> TlsFiles:
    return generate(tmp_path / "tls", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))


async def run_client(script: str, mock: MockExchange, **urls: str) -> Any:
    """Run ``script`` in a fresh interpreter that trusts the mock's CA; return its JSON output."""
    assert mock.ca_file is not None
    env = {
        **os.environ,
        "SSL_CERT_FILE": mock.ca_file,
        "REQUESTS_CA_BUNDLE": mock.ca_file,
        "PYTHONWARNINGS": "ignore",
        **{f"MOCK_{k.upper()}": v for k, v in urls.items()},
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()[-3000:]
    return orjson.loads(out.splitlines()[-1])


PYTHON_BINANCE = """
import asyncio, json, os
from binance import AsyncClient, BinanceSocketManager, Client

rest, ws = os.environ["MOCK_REST"], os.environ["MOCK_WS"]
sync = Client("mock-key", "mock-secret", base_endpoint="", ping=False)
sync.API_URL = rest + "/api"
order = sync.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001",
                          newClientOrderId="tls-1")
book = sync.get_order_book(symbol="BTCUSDT", limit=5)

async def stream():
    client = AsyncClient("mock-key", "mock-secret")
    client.API_URL = rest + "/api"
    try:
        time = await client.get_server_time()
        manager = BinanceSocketManager(client)
        manager.STREAM_URL = ws + "/"
        async with manager.trade_socket("BTCUSDT") as socket:
            trade = await asyncio.wait_for(socket.recv(), 10)
        return time, trade
    finally:
        await client.close_connection()

time, trade = asyncio.run(stream())
print(json.dumps({"order": order, "book": book, "time": time, "trade": trade}))
"""


def test_python_binance_over_tls(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(trades_per_s=50.0, tls=make_tls(tmp_path))
        try:
            assert mock.rest_url.startswith("https://") and mock.ws_url.startswith("wss://")
            got = await run_client(PYTHON_BINANCE, mock, rest=mock.rest_url, ws=mock.ws_url)
        finally:
            await mock.close()
        order = mock.engine.find(client_order_id="tls-1")
        assert got["order"]["orderId"] == order.order_id and order.status == "FILLED"
        assert got["order"]["executedQty"] == "0.00100000"
        assert [f["tradeId"] for f in got["order"]["fills"]] == [f.trade_id for f in order.fills]
        assert len(got["book"]["bids"]) == 5
        assert got["trade"]["e"] == "trade" and got["trade"]["s"] == "BTCUSDT"
        assert got["time"]["serverTime"] > 0

    asyncio.run(scenario())


ALPACA_PY = """
import json, os, threading
from alpaca.data.live import StockDataStream
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

rest, data = os.environ["MOCK_REST"], os.environ["MOCK_DATA"]
client = TradingClient("mock-key", "mock-secret", paper=True, url_override=rest)
account = client.get_account()
order = client.submit_order(MarketOrderRequest(
    symbol="FAKEPACA", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
    client_order_id="tls-alpaca-1"))
got = threading.Event()
seen = []
async def on_trade(trade):
    seen.append(trade.symbol)
    got.set()
stream = StockDataStream("mock-key", "mock-secret", url_override=data + "/v2/test")
stream.subscribe_trades(on_trade, "FAKEPACA")
thread = threading.Thread(target=stream.run, daemon=True)
thread.start()
ok = got.wait(15)
stream.stop()
print(json.dumps({"cash": str(account.cash), "order": str(order.id),
                  "client": order.client_order_id, "trade": seen[0] if ok else None}))
"""


def test_alpaca_py_over_tls(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(alpaca_port=0, tls=make_tls(tmp_path))
        assert mock.alpaca_rest_url is not None and mock.alpaca_data_url is not None
        try:
            assert mock.alpaca_rest_url.startswith("https://")
            got = await run_client(
                ALPACA_PY, mock, rest=mock.alpaca_rest_url, data=mock.alpaca_data_url
            )
            assert mock.alpaca is not None
            order = mock.alpaca.broker.by_client_order_id("tls-alpaca-1")
        finally:
            await mock.close()
        assert got["trade"] == "FAKEPACA"
        assert order.id == got["order"] and got["client"] == "tls-alpaca-1"

    asyncio.run(scenario())


CRYPTOFEED = """
import asyncio, json, os
from cryptofeed import FeedHandler
from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
from cryptofeed.defines import L2_BOOK, TRADES
from cryptofeed.exchanges import Binance

# The feed's documented endpoint attributes point at the mock; cryptofeed takes only wss://.
Binance.websocket_endpoints = [WebsocketEndpoint(os.environ["MOCK_WS"])]
Binance.rest_endpoints = [RestEndpoint(os.environ["MOCK_REST"], routes=Routes(
    "/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}",
    authentication="/api/v3/userDataStream"))]
trades, books = [], []

async def main():
    done = asyncio.Event()
    async def on_trade(t, receipt):
        trades.append({"id": int(t.id), "price": str(t.price), "amount": str(t.amount)})
        if len(trades) >= 5 and books:
            done.set()
    async def on_book(b, receipt):
        books.append([str(p) for p, _ in b.book.bids.to_list()[:5]])
    handler = FeedHandler(config={"log": {"disabled": True}})
    handler.add_feed(Binance(symbols=["BTC-USDT"], channels=[TRADES, L2_BOOK],
                             callbacks={TRADES: on_trade, L2_BOOK: on_book}))
    handler.run(start_loop=False, install_signal_handlers=False)
    await asyncio.wait_for(done.wait(), 30)
    print(json.dumps({"trades": trades, "bids": books[0]}))
    os._exit(0)  # the feed handler has no awaitable stop for a borrowed loop

asyncio.run(main())
"""


def test_cryptofeed_streams_from_the_mock_over_wss(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(trades_per_s=50.0, tls=make_tls(tmp_path))
        try:
            got = await run_client(CRYPTOFEED, mock, rest=mock.rest_url, ws=mock.ws_url)
            history = {agg_id: trade for agg_id, trade in mock.feed.trades["BTCUSDT"]}
        finally:
            await mock.close()
        # cryptofeed reads aggTrade: each id is an aggregate id of the mock's trade history.
        for trade in got["trades"]:
            sim = history[trade["id"]]
            assert Decimal(trade["price"]) == Decimal(sim.price)
            assert Decimal(trade["amount"]) == Decimal(sim.qty)
        bids = [Decimal(p) for p in got["bids"]]
        assert len(bids) == 5 and bids == sorted(bids, reverse=True)

    asyncio.run(scenario())


def test_clients_that_do_not_trust_the_ca_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(tls=make_tls(tmp_path))
        try:
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await http.get(f"{mock.rest_url}/api/v3/ping")
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"{mock.ws_url}/ws/btcusdt@trade")
        finally:
            await mock.close()

    asyncio.run(scenario())


def test_stage_helpers_trust_the_configured_ca_file(tmp_path: Path) -> None:
    async def scenario() -> None:
        mock = await start_mock(tls=make_tls(tmp_path))
        try:
            client_tls.trust_ca_file(mock.ca_file)
            async with aiohttp.ClientSession(connector=client_tls.http_connector()) as http:
                async with http.get(f"{mock.rest_url}/api/v3/time") as response:
                    assert response.status == 200
                    assert (await response.json())["serverTime"] > 0
            url = f"{mock.ws_url}/ws/btcusdt@trade"
            async with connect(url, ssl=client_tls.ws_ssl(url)) as ws:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["e"] == "trade"
        finally:
            client_tls.trust_ca_file(None)
            await mock.close()

    asyncio.run(scenario())


def test_a_bad_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="TICKPIPE_CA_FILE"):
        client_tls.trust_ca_file(str(bad))
    with pytest.raises(ConfigError, match="no such file"):
        client_tls.trust_ca_file(str(tmp_path / "absent.pem"))


def test_mock_process_serves_tls_and_names_its_ca_file(tmp_path: Path) -> None:
    with mock_process(tmp_path, "--binance-port", "0", "--tls") as mock:
        ca_file = mock.ready["ca_file"]
        assert mock.ready["tls"] is True and Path(ca_file) == tmp_path / "ca.pem"
        assert oct((tmp_path / "key.pem").stat().st_mode & 0o777) == "0o600"
        context = ssl.create_default_context(cafile=ca_file)
        port = mock.ready["binance_port"]
        request = urllib.request.Request(f"https://127.0.0.1:{port}/api/v3/ping")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            assert response.status == 200 and orjson.loads(response.read()) == {}
        code, _ = mock.stop()
    assert code == 0


def test_mock_process_refuses_half_a_certificate(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickpipe.mock_ws", "--binance-port", "0",
         "--env-file", str(tmp_path / "none.env"), "--tls-cert", str(tmp_path / "c.pem")],
        capture_output=True, text=True, timeout=30, check=False, env=mock_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr
