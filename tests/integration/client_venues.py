"""Reach each venue's embeddable client on the mock the same way, for tests run per venue.

A :class:`Venue` names the mock's options that start the venue, builds its client (optionally a
subclass whose error policy gives up at the first lost connection), drops its market-data
connection at the mock, and reads the trade ids the mock recorded as sent, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.waits import until
from tickpipe.common.errors import VenueError
from tickpipe.mock_ws import GroundTruth, MockExchange, read_ground_truth
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.clients import VenueClient
from tickpipe.venues.ibkr.client import IbkrClient

__all__ = ["VENUES", "GiveUp", "GivingUp", "Venue", "venues"]


class GiveUp(VenueError):
    """The user's own policy decided to stop after a dropped connection."""


class GivingUp:
    """A user's error policy that treats any lost connection as fatal."""

    gave_up = False

    def handle_websocket_error(self, error: BaseException) -> float:
        self.gave_up = True
        raise GiveUp(f"giving up after {error}")


class GivingUpBinance(GivingUp, BinanceClient):
    pass


class GivingUpAlpaca(GivingUp, AlpacaClient):
    pass


class GivingUpIbkr(GivingUp, IbkrClient):
    pass


@dataclass(frozen=True)
class Venue:
    """How one venue's client, a symbol that trades fast and the mock's record are reached."""

    name: str
    symbol: str
    mock_options: dict[str, Any]
    make: Callable[[MockExchange, bool, dict[str, Any]], VenueClient]
    drop: Callable[[MockExchange], Awaitable[None]]
    sent: Callable[[GroundTruth, str], list[str]]  # trade ids sent, in order

    def client(self, mock: MockExchange, *, giving_up: bool = False, **options: Any) -> Any:
        """Build the venue's client on ``mock`` (``giving_up``: the :class:`GivingUp` one)."""
        return self.make(mock, giving_up, options)

    async def start(self, client: Any) -> None:
        """Connect ``client`` and subscribe the venue's fast symbol."""
        await client.connect_to_websocket()
        await client.subscribe_to_ticker(self.symbol)

    async def sent_at_least(self, truth: Path, count: int) -> list[str]:
        """Return the trade ids the mock recorded as sent, once it recorded ``count`` (each is
        written just after its frame went out, so a client may hold it a moment earlier)."""

        def read() -> list[str]:
            return self.sent(read_ground_truth(truth), self.symbol)

        await until(lambda: len(read()) >= count, timeout_s=10, what=f"{count} trades recorded")
        return read()


def _binance(mock: MockExchange, giving_up: bool, options: dict[str, Any]) -> VenueClient:
    cls = GivingUpBinance if giving_up else BinanceClient
    return cls(mock.ws_url, mock.ws_api_url, mock.rest_url, **options)


async def _drop_binance(mock: MockExchange) -> None:
    await mock.inject({"type": "drop", "kind": "stream"})


def _binance_sent(truth: GroundTruth, symbol: str) -> list[str]:
    return [str(r["trade_id"]) for r in truth.trades_sent() if r["symbol"] == symbol]


def _alpaca(mock: MockExchange, giving_up: bool, options: dict[str, Any]) -> VenueClient:
    cls = GivingUpAlpaca if giving_up else AlpacaClient
    assert mock.alpaca_data_url and mock.alpaca_trading_url and mock.alpaca_rest_url
    urls = (mock.alpaca_data_url, mock.alpaca_trading_url, mock.alpaca_rest_url)
    return cls(*urls, "mock-key", "mock-secret", feed="crypto", **options)


_closing: set[asyncio.Future[bool]] = set()


async def _drop_alpaca(mock: MockExchange) -> None:
    """Close the data connections (1011) without waiting: a blocked client answers late."""
    assert mock.alpaca is not None
    for conn in list(mock.alpaca.connections.values()):
        if conn.data is not None:
            task = asyncio.ensure_future(conn.ws.close(code=1011, message=b"test drop"))
            _closing.add(task)
            task.add_done_callback(_closing.discard)


def _alpaca_sent(truth: GroundTruth, symbol: str) -> list[str]:
    records = truth.events("alpaca_trade_sent")
    return [str(r["trade_id"]) for r in records if r["symbol"] == symbol]


def _ibkr(mock: MockExchange, giving_up: bool, options: dict[str, Any]) -> VenueClient:
    cls = GivingUpIbkr if giving_up else IbkrClient
    assert mock.ibkr_rest_url and mock.ibkr_ws_url
    return cls(mock.ibkr_rest_url, mock.ibkr_ws_url, **options)


async def _drop_ibkr(mock: MockExchange) -> None:
    await mock.inject({"type": "drop", "path": "/v1/api/ws"})


def _ibkr_sent(truth: GroundTruth, symbol: str) -> list[str]:
    """The ``_updated`` time of each level-1 update with a last price or size: a Trade's id
    (a last price ``C...`` is the prior close, sent before the symbol's first trade: no trade)."""
    records = truth.events("ibkr_last_sent")
    return [
        str(r["updated"])
        for r in records
        if r["symbol"] == symbol and not str(r["price"]).startswith("C")
    ]


#: The gateway mock's level-1 updates of a conid, as often as its market loop steps.
IBKR_OPTIONS = {"ibkr_port": 0, "ibkr_options": {"md_interval_s": 0.001}}

VENUES = [
    Venue("binance", "BTCUSDT", {"binance_port": 0}, _binance, _drop_binance, _binance_sent),
    Venue("alpaca", "BTC/USD", {"alpaca_port": 0}, _alpaca, _drop_alpaca, _alpaca_sent),
    Venue("ibkr", "AAPL", IBKR_OPTIONS, _ibkr, _drop_ibkr, _ibkr_sent),
]
#: Run a test once per venue client, as ``venue``.
venues = pytest.mark.parametrize("venue", VENUES, ids=[v.name for v in VENUES])
