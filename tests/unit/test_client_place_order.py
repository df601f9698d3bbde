"""The clients' one ``place_order``: naming, the venue's default time in force, unclear outcomes.

A fake venue supplies only the hook every client fills (``_send_order``) and a lookup; the public
method is :class:`venues.clients.VenueClient`'s, the same on Binance, Alpaca and IBKR. Also the
REST clients' shared reading of a refused cancel (:class:`venues.clients.AdapterClient`).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from tickpipe.common.errors import (
    AmbiguousOutcome,
    ConfigError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
)
from tickpipe.common.schema import OrderIntent
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.clients import AdapterClient, OrderState, VenueClient
from tickpipe.venues.ibkr.client import IbkrClient


class FakeVenue(VenueClient):
    """Answers each place with the next of ``answers`` (an exception is raised), records sends."""

    venue = "fake"
    default_time_in_force: ClassVar[str | None] = "GTC"

    def __init__(self, answers: list[Any], known: dict[str, dict[str, Any]]) -> None:
        super().__init__(clock=lambda: 1_000)
        self.answers = answers
        self.known = known  # what a lookup by client id finds
        self.sent: list[tuple[OrderIntent, str | None]] = []
        self.looked_up: list[str] = []

    async def _send_order(self, intent: OrderIntent, time_in_force: str | None) -> dict[str, Any]:
        self.sent.append((intent, time_in_force))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer, clientOrderId=intent.client_order_id)

    async def order_status(self, symbol: str, client_order_id: str) -> OrderState:
        self.looked_up.append(client_order_id)
        if client_order_id not in self.known:
            raise OrderNotFound(client_order_id)
        return OrderState.from_result(self.venue, self.known[client_order_id])


def run(client: FakeVenue, **terms: Any) -> OrderState:
    return asyncio.run(client.place_order("BTCUSDT", "BUY", "1", **terms))


def test_every_client_places_through_the_one_public_method() -> None:
    for cls in (BinanceClient, AlpacaClient, IbkrClient):
        assert cls.place_order is VenueClient.place_order, cls.__name__
    defaults = {c.venue: c.default_time_in_force for c in (BinanceClient, AlpacaClient, IbkrClient)}
    # Alpaca's default depends on the symbol (gtc for crypto, day for stocks): its adapter decides
    assert defaults == {"binance": "GTC", "alpaca": None, "ibkr": "DAY"}


def test_an_order_without_a_client_id_gets_a_fresh_one_and_the_venue_default() -> None:
    client = FakeVenue([{"status": "NEW", "orderId": 7, "symbol": "BTCUSDT"}], {})
    placed = run(client)
    ((intent, time_in_force),) = client.sent
    assert placed.client_order_id == intent.client_order_id
    assert intent.client_order_id.startswith("tp-") and len(intent.client_order_id) == 27
    assert (intent.side, intent.qty, intent.order_type, time_in_force) == (
        "buy",
        "1",
        "MARKET",
        "GTC",
    )
    assert (placed.status, placed.order_id) == ("NEW", "7")


def test_the_caller_s_time_in_force_and_id_win() -> None:
    client = FakeVenue([{"status": "NEW"}], {})
    run(client, order_type="limit", price="5", time_in_force="IOC", client_order_id="mine")
    ((intent, time_in_force),) = client.sent
    assert (intent.client_order_id, intent.order_type, intent.price) == ("mine", "LIMIT", "5")
    assert time_in_force == "IOC"


def test_a_limit_order_without_a_price_is_refused_before_anything_is_sent() -> None:
    client = FakeVenue([], {})
    with pytest.raises(ConfigError, match="needs a price"):
        run(client, order_type="LIMIT")
    assert client.sent == []


@pytest.mark.parametrize("unclear", [AmbiguousOutcome("timeout"), DuplicateOrder("id taken")])
def test_an_unclear_place_is_settled_by_a_lookup_never_a_second_send(unclear: Exception) -> None:
    found = {"clientOrderId": "c-1", "status": "FILLED", "orderId": 9, "executedQty": "1"}
    client = FakeVenue([unclear], {"c-1": found})
    placed = run(client, client_order_id="c-1")
    assert len(client.sent) == 1 and client.looked_up == ["c-1"]
    assert (placed.status, placed.order_id, placed.filled_qty) == ("FILLED", "9", "1")


def test_an_unclear_place_the_venue_does_not_know_raises_the_original_error() -> None:
    client = FakeVenue([AmbiguousOutcome("timeout")], {})
    with pytest.raises(AmbiguousOutcome, match="timeout"):
        run(client, client_order_id="c-2")
    assert len(client.sent) == 1 and client.looked_up == ["c-2"]


class FakeRestVenue(AdapterClient):
    """Lists two open orders; the venue refuses the cancel of the first (filled meanwhile)."""

    venue = "fake-rest"

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        found = [{"clientOrderId": f"o-{n}", "symbol": "AAPL", "status": "NEW"} for n in (1, 2)]
        return [OrderState.from_result(self.venue, o) for o in found]

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        if client_order_id == "o-1":
            raise OrderRejected("order is not open any more")
        return OrderState.from_result(self.venue, {"clientOrderId": client_order_id,
                                                   "status": "CANCELED"})  # fmt: skip


def test_a_rest_client_skips_an_order_closed_before_its_cancel() -> None:
    for cls in (AlpacaClient, IbkrClient):
        assert cls.cancel_closed is AdapterClient.cancel_closed, cls.__name__
    cancelled = asyncio.run(FakeRestVenue().cancel_all("AAPL"))
    assert [(o.client_order_id, o.status) for o in cancelled] == [("o-2", "CANCELED")]
