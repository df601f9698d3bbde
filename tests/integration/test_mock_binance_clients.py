"""Integration test: ccxt and python-binance, unmodified, against the Binance mock over TLS.

Each test is one flow a user of the client runs: tickers, order history and bulk actions,
the venue's filters and order types, and the WebSocket API's market-data and account methods.
The clients trust the mock's generated CA the way their users trust a private CA: ccxt's
``cafile`` option, python-binance's ``requests_params={"ssl": ...}`` for REST and
``SSL_CERT_FILE`` for its WebSocket connections. Answers are compared with the mock's own
state; market-data tests freeze the mock's clock so that state stands still.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.mock_support import ManualClock, wait_for
from tickpipe.mock_ws import MockExchange, start_mock
from tickpipe.mock_ws.binance.tickers import avg_price, book_tickers, tickers_24hr
from tickpipe.mock_ws.tls import generate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import ccxt.async_support as ccxt
    from binance import AsyncClient
    from binance.exceptions import BinanceAPIException
    from binance.ws.websocket_api import WebsocketAPI

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
NS_PER_MS = 1_000_000
T = TypeVar("T")


@asynccontextmanager
async def tls_mock(tmp_path: Path, **kwargs: Any) -> AsyncIterator[MockExchange]:
    files = generate(tmp_path / "tls", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    mock = await start_mock(tls=files, **kwargs)
    try:
        yield mock
    finally:
        await mock.close()


@asynccontextmanager
async def frozen_market(tmp_path: Path) -> AsyncIterator[tuple[MockExchange, int]]:
    """Yield a TLS mock on a manual clock once every symbol traded, and the time it holds (ms).

    The clock moves half a second per poll until then, and stands still afterwards.
    """
    clock = ManualClock()
    async with tls_mock(tmp_path, clock=clock, trades_per_s=20.0) as mock:
        feed = mock.feed

        def traded() -> bool:
            # Every symbol traded (the clock moves until then), and the market's 1-second tick
            # has caught up with the clock: no candle opens later on its own, so the answers and
            # the ground truth read after them stay equal.
            if not all(feed.tickers[s].trades for s in feed.books):
                clock.ns += 500_000_000
                return False
            now_ms = clock() // NS_PER_MS
            candles = [feed.candles[(s, "1s")].current for s in feed.books]
            return all(c is not None and c.open_ms <= now_ms <= c.close_ms for c in candles)

        await wait_for(traded, "trades")
        yield mock, clock() // NS_PER_MS


def ccxt_binance(mock: MockExchange, module: Any = ccxt) -> Any:
    """Return ``module.binance`` (ccxt's async or its pro flavour) pointed at the mock's REST."""
    exchange = module.binance(
        {
            "apiKey": "mock-key",
            "secret": "mock-secret",
            "cafile": mock.ca_file,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    )
    for name in ("public", "private"):
        exchange.urls["api"][name] = f"{mock.rest_url}/api/v3"
    return exchange


@asynccontextmanager
async def python_binance(
    mock: MockExchange, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncClient]:
    """Hold a python-binance client pointed at the mock's REST and WebSocket API; close it after."""
    assert mock.ca_file is not None
    monkeypatch.setenv("SSL_CERT_FILE", mock.ca_file)  # websockets reads it per connection
    context = ssl.create_default_context(cafile=mock.ca_file)
    client = AsyncClient("mock-key", "mock-secret", requests_params={"ssl": context})
    client.API_URL = f"{mock.rest_url}/api"
    client.ws_api = WebsocketAPI(url=mock.ws_api_url)
    client.ws_api.TIMEOUT = 1
    try:
        yield client
    finally:
        await client.close_connection()


def python_binance_on_frozen_market(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ask: Callable[[AsyncClient], Awaitable[T]],
) -> tuple[MockExchange, int, T]:
    """Run ``ask`` with a python-binance client on a :func:`frozen_market`; return the mock, the
    time its clock holds (ms) and what ``ask`` returned. The closed mock's market state stays
    as the client saw it, for the test to compare with."""

    async def main() -> tuple[MockExchange, int, T]:
        async with frozen_market(tmp_path) as (mock, now_ms):
            async with python_binance(mock, monkeypatch) as client:
                return mock, now_ms, await ask(client)

    return asyncio.run(main())


def test_ccxt_tickers_equal_the_mock_market(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with frozen_market(tmp_path) as (mock, now_ms):
            feed = mock.feed
            exchange = ccxt_binance(mock)
            try:
                await exchange.load_markets()
                one = await exchange.fetch_ticker("BTC/USDT")
                every = await exchange.fetch_tickers()
                best = await exchange.fetch_bids_asks()
            finally:
                await exchange.close()
            assert one["info"] == tickers_24hr(feed, {"symbol": "BTCUSDT"}, now_ms)
            assert one["last"] == float(mock.market.last_price("BTCUSDT"))
            expected = {t["symbol"]: t for t in tickers_24hr(feed, {}, now_ms)}
            assert {t["info"]["symbol"]: t["info"] for t in every.values()} == expected
            books = {b["symbol"]: b for b in book_tickers(feed, {})}
            assert {t["info"]["symbol"]: t["info"] for t in best.values()} == books

    asyncio.run(scenario())


def test_python_binance_tickers_equal_the_mock_market(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ask(client: AsyncClient) -> list[Any]:
        return [
            await client.get_ticker(symbol="ETHUSDT"),
            await client.get_symbol_ticker(symbol="ETHUSDT"),
            await client.get_symbol_ticker(),
            await client.get_orderbook_ticker(symbol="ETHUSDT"),
            await client.get_avg_price(symbol="ETHUSDT"),
            await client.get_ui_klines(symbol="ETHUSDT", interval="1m"),
        ]

    mock, now_ms, answers = python_binance_on_frozen_market(tmp_path, monkeypatch, ask)
    day, price, prices, book, average, ui = answers
    feed = mock.feed
    assert day == tickers_24hr(feed, {"symbol": "ETHUSDT"}, now_ms)
    assert Decimal(price["price"]) == Decimal(mock.market.last_price("ETHUSDT"))
    assert {p["symbol"] for p in prices} == {"BTCUSDT", "ETHUSDT"}
    assert book == book_tickers(feed, {"symbol": "ETHUSDT"})
    assert average == avg_price(feed, "ETHUSDT", now_ms) and average["mins"] == 5
    # The 5-minute average over every trade the market made (all inside the window).
    trades = [t for _, t in feed.trades["ETHUSDT"]]
    volume = sum(Decimal(t.qty) for t in trades)
    vwap = sum(Decimal(t.price) * Decimal(t.qty) for t in trades) / volume
    assert Decimal(average["price"]) == vwap.quantize(Decimal("0.00000001"))
    assert ui == feed.klines("ETHUSDT", "1m", None, None, 500) and ui


def test_ccxt_order_history_bulk_cancel_and_test_orders(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with tls_mock(tmp_path, trades_per_s=20.0) as mock:
            engine = mock.engine
            exchange = ccxt_binance(mock)
            try:
                await exchange.load_markets()
                bought = await exchange.create_order("BTC/USDT", "market", "buy", 0.002)
                sold = await exchange.create_order("BTC/USDT", "market", "sell", 0.001)
                low = Decimal(mock.market.last_price("BTC/USDT".replace("/", ""))) * Decimal("0.9")
                resting = [
                    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, float(p))
                    for p in (low.quantize(Decimal("0.01")), (low - 1).quantize(Decimal("0.01")))
                ]
                before = len(engine.orders)
                tested = await exchange.create_order(
                    "BTC/USDT", "market", "buy", 0.001, params={"test": True}
                )
                trades = await exchange.fetch_my_trades("BTC/USDT")
                orders = await exchange.fetch_orders("BTC/USDT")
                cancelled = await exchange.cancel_all_orders("BTC/USDT")
                with pytest.raises(ccxt.OrderNotFound):  # -2011: nothing open any more
                    await exchange.cancel_all_orders("BTC/USDT")
            finally:
                await exchange.close()
            # order/test validated the order and placed nothing.
            assert len(engine.orders) == before and tested["info"] == {}
            fills = [(o.order_id, f) for o in engine.orders for f in o.fills]
            assert sorted(int(t["id"]) for t in trades) == sorted(f.trade_id for _, f in fills)
            for trade in trades:
                order_id, fill = next((i, f) for i, f in fills if f.trade_id == int(trade["id"]))
                assert int(trade["order"]) == order_id
                assert Decimal(trade["info"]["price"]) == fill.price
                assert Decimal(trade["info"]["qty"]) == fill.qty
                assert Decimal(trade["info"]["commission"]) == fill.commission
            assert [int(o["id"]) for o in orders] == [o.order_id for o in engine.orders]
            assert [o["status"] for o in orders] == ["closed", "closed", "open", "open"]
            assert {int(o["id"]) for o in cancelled} == {int(o["id"]) for o in resting}
            assert [o.status for o in engine.orders] == ["FILLED", "FILLED", "CANCELED", "CANCELED"]
            assert not engine.open_orders() and not engine.locked.get("USDT")
            assert bought["filled"] == 0.002 and sold["filled"] == 0.001

    asyncio.run(scenario())


def test_ccxt_meets_the_venue_filters_and_order_types(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with tls_mock(tmp_path, trades_per_s=20.0) as mock:
            engine = mock.engine
            exchange = ccxt_binance(mock)

            async def refused(*args: Any, **kwargs: Any) -> str:
                count = len(engine.orders)
                with pytest.raises(ccxt.ExchangeError) as info:
                    await exchange.create_order(*args, **kwargs)
                assert len(engine.orders) == count  # nothing was placed
                return str(info.value)

            try:
                markets = await exchange.load_markets()
                assert markets["BTC/USDT"]["limits"]["cost"]["min"] == 5.0  # NOTIONAL
                # 0.0002 ETH is about 0.5 USDT: below NOTIONAL's 5 USDT minimum.
                tiny = await refused("ETH/USDT", "market", "buy", 0.0002)
                assert "-1013" in tiny and "Filter failure: NOTIONAL" in tiny
                last = Decimal(mock.market.last_price("BTCUSDT"))
                far = (last / 10).quantize(Decimal("0.01"))
                band = await refused("BTC/USDT", "limit", "buy", 0.001, float(far))
                assert "Filter failure: PERCENT_PRICE_BY_SIDE" in band

                spent = await exchange.create_market_buy_order_with_cost("BTC/USDT", 20)
                by_cost = engine.find(order_id=spent["id"])
                assert by_cost.orig_quote_qty == 20 and by_cost.status == "FILLED"
                price = by_cost.fills[0].price
                assert by_cost.executed_qty == (20 / price).quantize(
                    Decimal("0.00001"), "ROUND_DOWN"
                )

                above = (last * Decimal("1.01")).quantize(Decimal("0.01"))
                taking = await refused(
                    "BTC/USDT", "limit", "buy", 0.001, float(above), params={"postOnly": True}
                )
                assert "Order would immediately match and take." in taking
                below = (last * Decimal("0.99")).quantize(Decimal("0.01"))
                maker = await exchange.create_order(
                    "BTC/USDT", "limit", "buy", 0.001, float(below), params={"postOnly": True}
                )
                assert engine.find(order_id=maker["id"]).type == "LIMIT_MAKER"

                stop = (last * Decimal("0.95")).quantize(Decimal("0.01"))
                stop_order = await exchange.create_order(
                    "BTC/USDT", "limit", "sell", 0.001, float(stop - 1),
                    params={"stopLossPrice": float(stop)},
                )  # fmt: skip
                waiting = engine.find(order_id=stop_order["id"])
                assert (waiting.type, waiting.stop_price, waiting.working) == (
                    "STOP_LOSS_LIMIT", stop, False,
                )  # fmt: skip
                fetched = await exchange.fetch_order(stop_order["id"], "BTC/USDT")
                assert fetched["info"]["isWorking"] is False
                assert Decimal(fetched["info"]["stopPrice"]) == stop
                now = await refused(
                    "BTC/USDT", "limit", "sell", 0.001, float(above),
                    params={"stopLossPrice": float(above)},
                )  # fmt: skip
                assert "Stop price would trigger immediately." in now
            finally:
                await exchange.close()

    asyncio.run(scenario())


def test_python_binance_websocket_api_market_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ask(client: AsyncClient) -> list[Any]:
        return [
            await client.ws_get_order_book(symbol="BTCUSDT", limit=10),
            await client.ws_get_recent_trades(symbol="BTCUSDT", limit=20),
            await client.ws_get_klines(symbol="BTCUSDT", interval="1s"),
            await client.ws_get_ticker(symbol="BTCUSDT"),
            await client.ws_get_ticker(symbols=["BTCUSDT", "ETHUSDT"]),
            await client.ws_get_symbol_ticker(symbol="BTCUSDT"),
            await client.ws_get_orderbook_ticker(symbol="BTCUSDT"),
            await client.ws_get_avg_price(symbol="BTCUSDT"),
        ]

    mock, now_ms, answers = python_binance_on_frozen_market(tmp_path, monkeypatch, ask)
    depth, recent, klines, day, every, price, book, average = answers
    feed = mock.feed
    assert depth == feed.depth("BTCUSDT", 10) and len(depth["bids"]) == 10
    assert recent == feed.recent_trades("BTCUSDT", 20) and recent
    assert klines == feed.klines("BTCUSDT", "1s", None, None, 500) and klines
    assert day == tickers_24hr(feed, {"symbol": "BTCUSDT"}, now_ms)
    assert every == tickers_24hr(feed, {}, now_ms)
    assert Decimal(price["price"]) == Decimal(mock.market.last_price("BTCUSDT"))
    assert book == book_tickers(feed, {"symbol": "BTCUSDT"})
    assert average == avg_price(feed, "BTCUSDT", now_ms)


def test_python_binance_websocket_api_account_methods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with tls_mock(tmp_path, trades_per_s=20.0) as mock:
            engine = mock.engine
            async with python_binance(mock, monkeypatch) as client:
                tested = await client.ws_create_test_order(
                    symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.01"
                )
                assert tested == {} and engine.orders == []
                with pytest.raises(BinanceAPIException) as refused:
                    await client.ws_create_test_order(
                        symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.0001"
                    )
                assert refused.value.code == -1013 and engine.orders == []
                bought = await client.ws_create_order(
                    symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.01"
                )
                last = Decimal(mock.market.last_price("ETHUSDT"))
                rest = await client.ws_create_order(
                    symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                    quantity="0.01", price=f"{last * Decimal('0.9'):.2f}",
                )  # fmt: skip
                mine = await client.ws_get_my_trades(symbol="ETHUSDT")
                every = await client.ws_get_all_orders(symbol="ETHUSDT")
                cancelled = await client.ws_cancel_all_open_orders(symbol="ETHUSDT")
        filled = engine.find(order_id=bought["orderId"])
        assert [t["id"] for t in mine] == [f.trade_id for f in filled.fills]
        assert all(t["orderId"] == filled.order_id and t["isBuyer"] for t in mine)
        assert [o["orderId"] for o in every] == [bought["orderId"], rest["orderId"]]
        assert [c["orderId"] for c in cancelled] == [rest["orderId"]]
        assert engine.find(order_id=rest["orderId"]).status == "CANCELED"

    asyncio.run(scenario())


def test_unknown_paths_and_the_retired_listen_key_answer_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        retired = clock.ns + 60_000_000_000
        async with tls_mock(
            tmp_path, clock=clock, alpaca_port=0, listen_key_retired_ns=retired
        ) as mock:
            context = ssl.create_default_context(cafile=mock.ca_file)
            async with python_binance(mock, monkeypatch) as client:
                key = await client.stream_get_listen_key()
                assert key and key in mock._server.trading.listen_keys
                clock.ns = retired  # the changelog's retirement date has come
                with pytest.raises(BinanceAPIException) as gone:
                    await client.stream_get_listen_key()
                assert gone.value.status_code == 404 and gone.value.code == -1000
                async with aiohttp.ClientSession() as http:
                    for url in (
                        f"{mock.rest_url}/api/v3/nope",
                        f"{mock.rest_url}/api/v3/ping?x=1",  # only GET is served
                        f"{mock.alpaca_rest_url}/v1/nope",
                    ):
                        method = "POST" if "ping" in url else "GET"
                        async with http.request(method, url, ssl=context) as response:
                            assert response.status == 404, url
                            assert response.content_type == "application/json", url
                            body = await response.json()
                            assert set(body) in ({"code", "msg"}, {"code", "message"}), body

    asyncio.run(scenario())


def test_ccxt_pro_streams_and_trades_over_wss(tmp_path: Path) -> None:
    import ccxt.pro as ccxtpro

    async def scenario() -> None:
        async with tls_mock(tmp_path, trades_per_s=50.0) as mock:
            exchange = ccxt_binance(mock, ccxtpro)
            exchange.urls["api"]["ws"]["spot"] = f"{mock.ws_url}/ws"
            exchange.urls["api"]["ws"]["ws-api"]["spot"] = mock.ws_api_url
            try:
                trades = await asyncio.wait_for(exchange.watch_trades("BTC/USDT"), 15)
                book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 15)
                placed = await asyncio.wait_for(
                    exchange.create_order_ws("BTC/USDT", "market", "buy", 0.001), 15
                )
                mine = await asyncio.wait_for(exchange.fetch_my_trades_ws("BTC/USDT"), 15)
                orders = await asyncio.wait_for(exchange.fetch_orders_ws("BTC/USDT"), 15)
            finally:
                await exchange.close()
            history = {t.trade_id: t for _, t in mock.feed.trades["BTCUSDT"]}
            for trade in trades:  # what the stream said is what the market traded
                assert Decimal(str(trade["price"])) == Decimal(history[int(trade["id"])].price)
            assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) > 5
            order = mock.engine.find(order_id=placed["id"])
            assert order.status == "FILLED" and placed["status"] == "closed"
            assert [int(t["id"]) for t in mine] == [f.trade_id for f in order.fills]
            assert [int(o["id"]) for o in orders] == [order.order_id]

    asyncio.run(scenario())
