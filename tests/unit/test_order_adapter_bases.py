"""The order adapters' shared fields are declared once (``venues.adapters``) and mean the same."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from tickpipe.common.errors import OrderRejected
from tickpipe.venues.adapters import RestOrders, VenueOrders
from tickpipe.venues.alpaca.order_adapter import AlpacaOrders
from tickpipe.venues.binance.order_adapter import BinanceOrders
from tickpipe.venues.ibkr.order_adapter import IbkrOrders


def owner(cls: type, name: str) -> type:
    """Return the class in ``cls``'s hierarchy that declares the field ``name``."""
    return next(c for c in cls.__mro__ if name in inspect.get_annotations(c))


@pytest.mark.parametrize("cls", [BinanceOrders, AlpacaOrders, IbkrOrders], ids=lambda c: c.__name__)
def test_every_adapter_takes_its_clock_from_the_base(cls: type) -> None:
    clock = {f.name: f for f in dataclasses.fields(cls)}["clock"]
    assert clock.kw_only and owner(cls, "clock") is VenueOrders


@pytest.mark.parametrize("cls", [AlpacaOrders, IbkrOrders], ids=lambda c: c.__name__)
def test_the_rest_adapters_share_order_ids_and_errors(cls: type[RestOrders]) -> None:
    assert owner(cls, "order_id_of") is RestOrders
    # a refused cancel at a REST venue (404/422) is settled by a lookup, never final
    assert cls.cancel_unclear is RestOrders.cancel_unclear and OrderRejected in cls.cancel_unclear
    assert cls.list_failed is RestOrders.list_failed


def test_binance_keeps_its_own_errors() -> None:
    # Binance's cancel the venue refuses is final (only an unknown or unclear one is looked up)
    assert OrderRejected not in BinanceOrders.cancel_unclear
    assert BinanceOrders.list_failed != RestOrders.list_failed
