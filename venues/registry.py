"""Pick a venue by name: one :class:`Venue` description per venue package.

Stage code reaches venue code only through :func:`venue`: the ingestor plans its connection slots
with ``plan_links``, the processor parses a private frame with ``parse_private``, the trader opens
its order connection with ``order_link`` (its I/O modules are imported only then, so the pure
stages that read this registry import no network library), and each reads the venue's rules
(symbol pairs, contiguous trade ids...) from the description instead of testing a venue's name.
Adding a venue is one package under :mod:`venues` and one entry in :data:`VENUES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tickpipe.common.errors import AuthError, ConfigError
from tickpipe.common.links import Link, Reply
from tickpipe.common.messages import Balance, MarketItem, MessageItem
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.common.settings import Secret, Settings
from tickpipe.venues.alpaca import ingest as alpaca_ingest
from tickpipe.venues.alpaca import market as alpaca_market
from tickpipe.venues.alpaca import private as alpaca_private
from tickpipe.venues.alpaca import session as alpaca_session
from tickpipe.venues.binance import market as binance_market
from tickpipe.venues.binance import private as binance_private
from tickpipe.venues.binance import session as binance_session
from tickpipe.venues.binance.orders import logon_params
from tickpipe.venues.binance.session import plan_links as binance_links
from tickpipe.venues.binance.session import (
    server_time_of,
    time_request,
    user_data_subscribe_request,
)
from tickpipe.venues.binance.signing import Signer
from tickpipe.venues.binance.wire import stream_name as binance_stream_name
from tickpipe.venues.ibkr import market as ibkr_market
from tickpipe.venues.ibkr import private as ibkr_private
from tickpipe.venues.ibkr import session as ibkr_session

__all__ = [
    "VENUES",
    "CombinedStreams",
    "OrderLink",
    "OrderOptions",
    "ServerTime",
    "Venue",
    "venue",
]


@dataclass(frozen=True, slots=True)
class CombinedStreams:
    """A venue's combined-stream protocol, which the ingestor's connection slot speaks.

    Streams are named per symbol and channel, carried in the connection URL while it is short
    enough, else subscribed by control messages; the venue answers each control message.
    """

    #: ``(symbol, channel)`` -> the stream's name (``btcusdt@trade``).
    stream_name: Callable[[str, str], str]
    #: Whether a frame carries a stream's data (else a reply or a control message).
    is_data_frame: Callable[[str | bytes], bool]
    #: A frame that answers a control message, as a :class:`Reply` (``None``: not an answer);
    #: called as ``classify_reply(frame, now_ms=...)``.
    classify_reply: Callable[..., Reply | None]
    #: The longest URL that carries the streams itself (longer: subscribe by messages).
    max_url_chars: int
    #: Streams per subscribe message.
    subscribe_chunk: int


@dataclass(frozen=True, slots=True)
class ServerTime:
    """How a private slot asks the venue for its clock before a signed subscription."""

    #: The request text for a request id.
    request: Callable[[str], str]
    #: The venue's time in ms if a frame answers the request with that id, else ``None``.
    answer: Callable[[str | bytes, str], int | None]


@dataclass(frozen=True, slots=True)
class OrderLink:
    """The trader's connection to a venue's order API, with how its requests are signed."""

    #: Build the connection (``BinanceWsApi``, ``AlpacaRest``); not called when a test injects one.
    open: Callable[[], Any]
    signer: Signer | None = None  # None: HMAC with the API secret (Binance)
    session: bool = False  # the connection logs on once; requests then go unsigned


@dataclass(frozen=True, slots=True)
class OrderOptions:
    """What the trader hands a venue's order adapter besides settings and the connection."""

    clock: Callable[[], int]  # ns
    recv_window_ms: int
    #: The venue's order id recorded for a client order id ("" when none is known yet).
    order_id_of: Callable[[str], Awaitable[str]]
    signer: Signer | None = None
    session: bool = False
    #: Write one entry to the trader's dead letters (a venue's refusal worth a person's look).
    dead_letter: Callable[[Mapping[str, str]], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Venue:
    """What the stages need to know about one venue, and the factories of its parts."""

    name: str
    #: Symbols are ``BASE/QUOTE`` pairs or share classes (``BTC/USD``, ``BRK.B``).
    symbol_pairs: bool
    #: Trade ids of a symbol are contiguous, so a hole in them is a lost trade (a gap to fill).
    contiguous_trade_ids: bool
    #: The trader places orders over REST (else over the venue's WebSocket API).
    rest_orders: bool
    #: Raise :class:`ConfigError` when the ingestor's keys for this venue are missing.
    check_keys: Callable[[Settings], None]
    #: The ingestor's connection slots, one :class:`common.links.Link` each.
    plan_links: Callable[[Settings], list[Link]]
    #: Classify a market-data frame that carries one value (``None``: ``classify_messages``).
    classify_frame: Callable[[str, RawFrame, int], MarketItem] | None
    #: Classify a market-data frame that carries many messages, one item per message
    #: (``None``: one value a frame, ``classify_frame``).
    classify_messages: Callable[[str, RawFrame], list[MessageItem]] | None
    #: The adapters that run this venue's ingestor links, one per link, market data first
    #: (``ingestor.adapter.VenueAdapter``); ``None``: the combined-stream slot runs them.
    ingest_adapters: Callable[[Settings, Sequence[Link]], list[Any]] | None
    #: The combined-stream URL of a market-data slot (``None``: the venue plans its own slots).
    market_url: Callable[[Settings], str] | None
    #: The signed request that subscribes a private slot to user data (``None``: none needed).
    user_data_request: Callable[[Settings, int, int], str] | None
    #: A private-stream frame as an order update and its identity, or a counter's name.
    parse_private: Callable[[RawFrame], tuple[OrderUpdate, int | str | None] | list[Balance] | str]
    #: The trader's order connection; raises :class:`ConfigError` for missing credentials.
    order_link: Callable[[Settings], OrderLink]
    #: The trader's order adapter over the connection (``trader.venue_router.OrderAdapter``).
    order_adapter: Callable[[Settings, Any, OrderOptions], Any]
    #: Open the order connection ahead of the first order (a no-op where there is none to open).
    connect_orders: Callable[[Any], Awaitable[None]]
    #: Say what to fix when the venue refuses the trader's key (``None``: raise it as it is).
    refused_key: Callable[[AuthError], ConfigError] | None = None
    #: The combined-stream protocol of the ingestor's connection slots (``None``: the venue
    #: runs its own sessions, ``ingest_adapters``).
    combined_streams: CombinedStreams | None = None
    #: Environment keys that point the venue at a real endpoint (none set: ``tickpipe up``
    #: starts the mock exchange for it).
    endpoint_keys: tuple[str, ...] = ()
    #: The venue's API key and secret in settings (the mock is started with them when set).
    credentials: Callable[[Settings], tuple[Secret | None, Secret | None]] = lambda _: (None, None)
    #: The mock exchange's arguments that serve this venue (``tickpipe up``).
    mock_args: Callable[[Settings], list[str]] = lambda _: []
    #: The settings that point the stages at the mock: (the mock's ports, key, secret, the
    #: environment) -> environment entries.
    mock_env: Callable[[Mapping[str, int], str, str, Mapping[str, str]], dict[str, str]] = (
        lambda ports, key, secret, env: {}
    )
    #: The venue's server-time request on a private slot (``None``: its subscription is unsigned).
    server_time: ServerTime | None = None


# -- Binance --------------------------------------------------------------------------------------
def _binance_keys(settings: Settings) -> None:
    """The market streams need no key; a key without its secret is caught by ``plan_links``."""


def _binance_order_link(settings: Settings) -> OrderLink:
    from tickpipe.venues.binance.signing import load_signer
    from tickpipe.venues.binance.ws_api import BinanceWsApi  # I/O: imported on demand

    if not settings.binance_api_key or not settings.binance_api_secret:
        raise ConfigError(
            "the trader needs API credentials: set BINANCE_API_KEY and BINANCE_API_SECRET"
        )
    signer = load_signer(settings.binance_key_type, settings.binance_api_secret.reveal())
    session = settings.binance_key_type == "ed25519"  # log on once, then send unsigned
    key = settings.binance_api_key.reveal()

    def logon(timestamp_ms: int) -> dict[str, Any]:
        return logon_params(api_key=key, timestamp_ms=timestamp_ms, signer=signer)

    def open_ws_api() -> Any:
        return BinanceWsApi(settings.binance_ws_api_url, logon=logon if session else None)

    return OrderLink(open_ws_api, signer, session)


def _binance_user_data(settings: Settings, request_id: int, timestamp_ms: int) -> str:
    return user_data_subscribe_request(
        settings.binance_api_key.reveal(),
        settings.binance_api_secret.reveal(),
        timestamp_ms=timestamp_ms,
        request_id=request_id,
    )


def _binance_orders(settings: Settings, connection: Any, options: OrderOptions) -> Any:
    from tickpipe.venues.binance.order_adapter import BinanceOrders

    return BinanceOrders(
        settings,
        connection,
        clock=options.clock,
        recv_window_ms=options.recv_window_ms,
        signer=options.signer,
        session=options.session,
    )


async def _binance_connect(connection: Any) -> None:
    from tickpipe.venues.binance.ws_api import BinanceWsApi

    if isinstance(connection, BinanceWsApi):
        await connection.connect()


def _binance_mock_env(
    ports: Mapping[str, int], key: str, secret: str, env: Mapping[str, str]
) -> dict[str, str]:
    port = ports["binance_port"]
    return {
        "BINANCE_API_KEY": key,
        "BINANCE_API_SECRET": secret,
        "TICKPIPE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
        "TICKPIPE_BINANCE_WS_API_URL": f"ws://127.0.0.1:{port}/ws-api/v3",
        "TICKPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
    }


# -- Alpaca ---------------------------------------------------------------------------------------
def _alpaca_mock_env(
    ports: Mapping[str, int], key: str, secret: str, env: Mapping[str, str]
) -> dict[str, str]:
    port = ports["alpaca_port"]
    out = {
        "ALPACA_API_KEY": key,
        "ALPACA_API_SECRET": secret,
        "TICKPIPE_ALPACA_DATA_URL": f"ws://127.0.0.1:{port}",
        "TICKPIPE_ALPACA_TRADING_URL": f"ws://127.0.0.1:{port}/stream",
        "TICKPIPE_ALPACA_REST_URL": f"http://127.0.0.1:{port}",
    }
    if "TICKPIPE_ALPACA_FEED" not in env:
        out["TICKPIPE_ALPACA_FEED"] = "test"  # the mock serves its test symbols on it
    return out


# -- Interactive Brokers --------------------------------------------------------------------------
def _ibkr_mock_env(
    ports: Mapping[str, int], key: str, secret: str, env: Mapping[str, str]
) -> dict[str, str]:
    gateway = f"127.0.0.1:{ports['ibkr_port']}"  # a gateway session needs no key
    out = {
        "TICKPIPE_IBKR_REST_URL": f"http://{gateway}/v1/api",
        "TICKPIPE_IBKR_WS_URL": f"ws://{gateway}/v1/api/ws",
    }
    if "TICKPIPE_IBKR_ALLOW_QUESTIONS" not in env:
        # the mock asks o10151 ("You are about to submit a market order") of every market
        # order; against the mock (only) it is answered "yes" unless the user chose otherwise
        out["TICKPIPE_IBKR_ALLOW_QUESTIONS"] = "o10151"
    return out


def _alpaca_order_link(settings: Settings) -> OrderLink:
    from tickpipe.venues.alpaca.rest import rest_from_settings  # I/O: imported on demand

    rest = rest_from_settings(settings)  # checks the credentials
    return OrderLink(lambda: rest)


def _alpaca_orders(settings: Settings, connection: Any, options: OrderOptions) -> Any:
    from tickpipe.venues.alpaca.order_adapter import AlpacaOrders

    return AlpacaOrders(connection, clock=options.clock, order_id_of=options.order_id_of)


async def _no_connect(connection: Any) -> None:
    return None


def _alpaca_refused(exc: AuthError) -> ConfigError:
    return ConfigError(
        f"Alpaca refused the API key ({exc}): check ALPACA_API_KEY and ALPACA_API_SECRET"
    )


# -- Interactive Brokers (Client Portal gateway) ------------------------------------------------
def _ibkr_ingest(settings: Settings, links: Sequence[Link]) -> list[Any]:
    from tickpipe.venues.ibkr.ingest import ingest_adapters  # I/O: imported on demand

    return ingest_adapters(settings, links)


def _ibkr_order_link(settings: Settings) -> OrderLink:
    from tickpipe.venues.ibkr.rest import rest_from_settings  # I/O: imported on demand

    rest = rest_from_settings(settings)
    return OrderLink(lambda: rest)


def _ibkr_orders(settings: Settings, connection: Any, options: OrderOptions) -> Any:
    from tickpipe.venues.ibkr.order_adapter import IbkrOrders

    return IbkrOrders(
        settings,
        connection,
        clock=options.clock,
        order_id_of=options.order_id_of,
        dead_letter=options.dead_letter,
    )


VENUES: Mapping[str, Venue] = {
    "binance": Venue(
        name="binance",
        symbol_pairs=False,
        contiguous_trade_ids=True,
        classify_frame=binance_market.classify,
        classify_messages=None,
        rest_orders=False,
        check_keys=_binance_keys,
        plan_links=binance_links,
        ingest_adapters=None,
        market_url=lambda settings: settings.binance_ws_url,
        user_data_request=_binance_user_data,
        parse_private=binance_private.parse_private,
        order_link=_binance_order_link,
        order_adapter=_binance_orders,
        connect_orders=_binance_connect,
        combined_streams=CombinedStreams(
            stream_name=binance_stream_name,
            is_data_frame=binance_session.is_data_frame,
            classify_reply=binance_session.classify_reply,
            max_url_chars=binance_session.MAX_URL_CHARS,
            subscribe_chunk=binance_session.SUBSCRIBE_CHUNK,
        ),
        endpoint_keys=("TICKPIPE_BINANCE_WS_URL", "TICKPIPE_BINANCE_WS_API_URL"),
        credentials=lambda s: (s.binance_api_key, s.binance_api_secret),
        mock_args=lambda s: ["--symbols", ",".join(s.symbols)],
        mock_env=_binance_mock_env,
        server_time=ServerTime(time_request, server_time_of),
    ),
    "alpaca": Venue(
        name="alpaca",
        symbol_pairs=True,
        contiguous_trade_ids=False,  # unique per symbol but not contiguous: no gaps
        classify_frame=None,
        classify_messages=alpaca_market.classify_messages,
        rest_orders=True,
        check_keys=alpaca_session.check_keys,
        plan_links=alpaca_session.plan_links,
        ingest_adapters=alpaca_ingest.ingest_adapters,
        market_url=None,
        user_data_request=None,
        parse_private=alpaca_private.parse_private,
        order_link=_alpaca_order_link,
        order_adapter=_alpaca_orders,
        connect_orders=_no_connect,
        refused_key=_alpaca_refused,
        endpoint_keys=("TICKPIPE_ALPACA_DATA_URL", "TICKPIPE_ALPACA_TRADING_URL"),
        credentials=lambda s: (s.alpaca_api_key, s.alpaca_api_secret),
        mock_args=lambda s: ["--alpaca-port", "0"],
        mock_env=_alpaca_mock_env,
    ),
    "ibkr": Venue(
        name="ibkr",
        symbol_pairs=False,
        contiguous_trade_ids=False,  # IBKR names no trade ids: its last-trade samples have none
        classify_frame=None,
        classify_messages=ibkr_market.classify_messages,
        rest_orders=True,
        check_keys=ibkr_session.check_keys,
        plan_links=ibkr_session.plan_links,
        ingest_adapters=_ibkr_ingest,
        market_url=None,
        user_data_request=None,
        parse_private=ibkr_private.parse_private,
        order_link=_ibkr_order_link,
        order_adapter=_ibkr_orders,
        connect_orders=_no_connect,
        endpoint_keys=("TICKPIPE_IBKR_REST_URL", "TICKPIPE_IBKR_WS_URL"),
        mock_args=lambda s: ["--ibkr-port", "0"],  # the gateway lists AAPL, MSFT and SPY
        mock_env=_ibkr_mock_env,
    ),
}


def venue(name: str) -> Venue:
    """Return the description of venue ``name``; raise :class:`ConfigError` for an unknown one."""
    found = VENUES.get(name)
    if found is None:
        raise ConfigError(f"unknown venue {name!r}: known venues are {', '.join(sorted(VENUES))}")
    return found
