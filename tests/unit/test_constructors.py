"""Guard the constructors declared as dataclasses: the same call shape, identity equality.

These classes declare their fields once (``@dataclass(eq=False)``). Their callers rely on the
parameters' order, which are keyword-only, and which may be left out; and on identity equality
and hashing (an instance may sit in a set or be a dict key). A field added in the wrong place,
a forgotten ``KW_ONLY`` or a dropped ``eq=False`` would change that silently.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from tickpipe.ingestor.gapwatch import GapWatch
from tickpipe.mock_ws.binance.rest_trade import RestTrading
from tickpipe.processor.shell import _Runner
from tickpipe.trader.consumer import GroupConsumer
from tickpipe.trader.instruments import Instruments
from tickpipe.trader.ledger import Ledger
from tickpipe.venues.alpaca.order_adapter import AlpacaOrders
from tickpipe.venues.binance.order_adapter import BinanceOrders
from tickpipe.venues.ibkr.order_adapter import IbkrOrders

SHAPES: dict[type, str] = {
    GapWatch: "rest, queue, stats, venue, clock",
    _Runner: "settings, redis, stop, clock, *, lease_ms, renew_s, retry_s, block_ms, "
    "retention_s, direct=True",
    GroupConsumer: "redis, settings, lease, counts, *, idle_s, failure, on_outage",
    Ledger: "redis, keys, venue, *, clock, counts, lease, tracker=<factory>",
    Instruments: "adapter, symbols, *, counts, clock, on_change=None",
    IbkrOrders: "settings, rest, *, clock, order_id_of, dead_letter=None",
    BinanceOrders: "settings, venue, *, clock, recv_window_ms, signer=None, session=False",
    AlpacaOrders: "rest, *, clock, order_id_of",
    RestTrading: "host, plan, keys, *, listen_key_retired_ns=None",
}


def _shape(cls: type) -> str:
    out: list[str] = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in out:
            out.append("*")
        if p.default is p.empty:
            out.append(p.name)
        elif type(p.default).__name__ == "_HAS_DEFAULT_FACTORY_CLASS":
            out.append(f"{p.name}=<factory>")
        else:
            out.append(f"{p.name}={p.default!r}")
    return ", ".join(out)


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda cls: cls.__name__)
def test_the_constructor_keeps_its_call_shape(cls: type) -> None:
    assert _shape(cls) == SHAPES[cls]


@pytest.mark.parametrize("cls", list(SHAPES), ids=lambda cls: cls.__name__)
def test_instances_compare_and_hash_by_identity(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__eq__ is object.__eq__
    assert cls.__hash__ is object.__hash__
