"""Pick a venue by name: one :class:`Venue` description per venue package.

Stage code reaches venue code only through :func:`venue`: the ingestor plans its connection slots
with ``plan_links``, the processor parses a private frame with ``parse_private``, the trader opens
its order connection with ``order_link`` (its I/O modules are imported only then, so the pure
stages that read this registry import no network library), and each reads the venue's rules
(symbol pairs, contiguous trade ids...) from the description instead of testing a venue's name.
Adding a venue is one package under :mod:`venues` and one entry in :data:`VENUES`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tickpipe.common.errors import AuthError, ConfigError
from tickpipe.common.links import Link
from tickpipe.common.messages import Balance, MarketItem, MessageItem
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.common.settings import Settings
from tickpipe.common.units import MS
from tickpipe.venues.alpaca import ingest as alpaca_ingest
from tickpipe.venues.alpaca import market as alpaca_market
from tickpipe.venues.alpaca import private as alpaca_private
from tickpipe.venues.alpaca import session as alpaca_session
from tickpipe.venues.binance import market as binance_market
from tickpipe.venues.binance import private as binance_private
from tickpipe.venues.binance.orders import logon_params
from tickpipe.venues.binance.session import plan_links as binance_links
from tickpipe.venues.binance.session import user_data_subscribe_request
from tickpipe.venues.binance.signing import Signer

__all__ = ["VENUES", "OrderLink", "OrderOptions", "Venue", "venue"]


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

    def logon() -> dict[str, Any]:
        return logon_params(api_key=key, timestamp_ms=time.time_ns() // MS, signer=signer)

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


# -- Alpaca ---------------------------------------------------------------------------------------
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
    ),
}


def venue(name: str) -> Venue:
    """Return the description of venue ``name``; raise :class:`ConfigError` for an unknown one."""
    found = VENUES.get(name)
    if found is None:
        raise ConfigError(f"unknown venue {name!r}: known venues are {', '.join(sorted(VENUES))}")
    return found
