"""Route a strategy's own order updates, fills and positions back to it (pure, no I/O).

A strategy that declares the ``orders`` input (:data:`processor.strategies.ORDERS`) gets, for
every order its own signals caused, each :class:`~common.schema.OrderUpdate` of
``{V}:order-updates`` (:meth:`Strategy.on_order_update`), each fill in it
(:meth:`Strategy.on_fill`, an :class:`OwnFill`) and its position in the symbol after that fill
(:meth:`Strategy.on_position`, an :class:`OwnPosition`: the sum of its own fills, average
price of the open quantity).

* **Whose order.** A signal's client order id is derived from its id
  (:func:`common.units.client_order_id_for`); the partition remembers the ids of the last
  :data:`MAX_ORDERS` orders its strategies placed, and the strategy of each, in its checkpoint.
  Updates of other orders (another partition's, or placed by hand) are passed over.
* **Refusals.** An order the trader refused before sending it (risk, order type, instrument
  filters) or the venue refused in its answer has no venue update: the trader's ``rejected``
  entry on ``{V}:orders`` becomes an update with status ``REJECTED`` and its ``reason``
  (:func:`refusal_update`).
* **Instrument filters.** A strategy that declares ``instruments`` gets each symbol's filters
  (:class:`common.instruments.InstrumentFilters`) in :meth:`Strategy.on_instruments` whenever
  the trader loads them for a term or they change (its ``instruments`` entries on
  ``{V}:orders``), with the same cursor and guarantees.
* **Exactly once.** The partition's checkpoint holds the id of the last ``order-updates`` and
  ``orders`` entry it has read; the entries after them are handed over with the next batch and
  the new ids are saved in the same atomic commit as the batch's outputs, so a crash or a
  takeover neither drops nor repeats one.
* **When.** Updates ride along with the partition's next batch of raw entries (market data is
  continuous; an idle partition delivers them with its next frame), before that batch's
  entries. Signals a hook returns get the id ``venue|symbol|o<entry id>|strategy|n``, named by
  the update's entry, which never changes (``r<entry id>`` for a refusal).

These signals depend on when an update arrived relative to the market data, so unlike the
others they are not a pure function of ``raw``; the update's stream entry id names each.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from tickpipe.common.contract import entry_key
from tickpipe.common.decimals import plain_text as _text
from tickpipe.common.instruments import InstrumentFilters, filters_of_fields
from tickpipe.common.schema import OrderUpdate, Signal
from tickpipe.common.units import client_order_id_for

__all__ = [
    "MAX_ORDERS",
    "OwnFill",
    "OwnOrders",
    "OwnPosition",
    "later_id",
    "order_event",
    "refusal_update",
    "updates_after",
]

T = TypeVar("T")

#: How many of the partition's most recent orders it can route updates for.
MAX_ORDERS = 8192

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OwnFill:
    """One fill of a strategy's own order, from the venue's order update."""

    strategy: str
    signal_id: str
    client_order_id: str
    venue: str
    symbol: str
    side: str
    qty: str
    price: str
    trade_id: str
    ts_event: int


@dataclass(frozen=True, slots=True)
class OwnPosition:
    """A strategy's position in one symbol after its fills: signed quantity, average price."""

    strategy: str
    venue: str
    symbol: str
    qty: str
    avg_price: str
    ts_event: int


class OwnOrders:
    """Which strategy placed which order, each strategy's positions, the last update read."""

    def __init__(self) -> None:
        #: client order id -> [strategy, signal id], oldest first.
        self.orders: OrderedDict[str, list[str]] = OrderedDict()
        #: "strategy|symbol" -> [qty, average price] as decimal text.
        self.positions: dict[str, list[str]] = {}
        #: id of the last ``order-updates`` entry handed over ("" = none yet).
        self.last_update_id = ""
        #: id of the last ``orders`` entry read for refusals ("" = none yet).
        self.last_order_event_id = ""

    def remember(self, signal: Signal) -> None:
        """Note the order a ``place`` signal will cause, for its updates to find the strategy."""
        if signal.action != "place":
            return
        cid = client_order_id_for(signal.signal_id)
        self.orders[cid] = [signal.strategy, signal.signal_id]
        self.orders.move_to_end(cid)
        while len(self.orders) > MAX_ORDERS:
            self.orders.popitem(last=False)

    def owner(self, client_order_id: str) -> tuple[str, str] | None:
        """The (strategy, signal id) of a remembered order, or ``None``."""
        found = self.orders.get(client_order_id)
        return (found[0], found[1]) if found else None

    def fill_of(self, update: OrderUpdate, strategy: str, signal_id: str) -> OwnFill | None:
        """The fill an update reports (an execution of type ``TRADE``), or ``None``."""
        if update.exec_type != "TRADE":
            return None
        try:
            qty = Decimal(update.last_qty or "0")
            Decimal(update.last_price or "0")
        except InvalidOperation:
            return None
        if qty <= 0:
            return None
        return OwnFill(strategy, signal_id, update.client_order_id, update.venue, update.symbol,
                       update.side.lower(), update.last_qty, update.last_price, update.trade_id,
                       update.ts_event)  # fmt: skip

    def apply(self, fill: OwnFill) -> OwnPosition:
        """Add ``fill`` to its strategy's position; return the position after it."""
        key = f"{fill.strategy}|{fill.symbol}"
        qty_text, avg_text = self.positions.get(key, ["0", "0"])
        qty, avg = Decimal(qty_text), Decimal(avg_text)
        amount, price = Decimal(fill.qty), Decimal(fill.price)
        signed = amount if fill.side == "buy" else -amount
        total = qty + signed
        if qty == 0 or (qty > 0) == (signed > 0):
            avg = (avg * abs(qty) + price * amount) / abs(total)
        elif total == 0:
            avg = _ZERO
        elif (total > 0) != (qty > 0):  # through zero: what is left opened at this price
            avg = price
        self.positions[key] = [_text(total), _text(avg)]
        return OwnPosition(fill.strategy, fill.venue, fill.symbol, _text(total), _text(avg),
                           fill.ts_event)  # fmt: skip

    def to_state(self) -> dict[str, Any]:
        return {
            "orders": [[cid, *owner] for cid, owner in self.orders.items()],
            "positions": self.positions,
            "last_update_id": self.last_update_id,
            "last_order_event_id": self.last_order_event_id,
        }

    def load_state(self, data: Any) -> None:
        data = dict(data or {})
        self.orders = OrderedDict(
            (str(cid), [str(strategy), str(signal_id)])
            for cid, strategy, signal_id in data.get("orders", [])
        )
        self.positions = {
            str(k): [str(v[0]), str(v[1])] for k, v in dict(data.get("positions", {})).items()
        }
        self.last_update_id = str(data.get("last_update_id", ""))
        self.last_order_event_id = str(data.get("last_order_event_id", ""))


def order_event(fields: Mapping[str, str], venue: str) -> OrderUpdate | InstrumentFilters | None:
    """What an ``{V}:orders`` entry means to strategies: a refusal, a symbol's filters, or
    nothing (``None``: the other events, which the venue's updates already tell)."""
    if fields.get("event") == "instruments":
        return filters_of_fields(dict(fields))
    return refusal_update(fields, venue)


def refusal_update(fields: Mapping[str, str], venue: str) -> OrderUpdate | None:
    """The update a trader's ``rejected`` entry of ``{V}:orders`` stands for, or ``None``."""
    if fields.get("event") != "rejected":
        return None
    try:
        ts = int(fields.get("ts", "0"))
    except ValueError:
        ts = 0
    return OrderUpdate(
        venue=venue, symbol=fields.get("symbol", ""),
        client_order_id=fields.get("client_order_id", ""), order_id="",
        side=fields.get("side", ""), order_type="", status="REJECTED", exec_type="REJECTED",
        qty=fields.get("qty", ""), price="", filled_qty="0", last_qty="0", last_price="",
        cum_quote="0", trade_id="", ts_event=ts, ts_recv=ts,
        reason=f"{fields.get('stage', 'venue')}: {fields.get('reason', '')}",
    )  # fmt: skip


def later_id(a: str, b: str) -> str:
    """The later of two stream entry ids (``""`` is earliest)."""
    if not a or not b:
        return a or b
    return a if entry_key(a) >= entry_key(b) else b


def updates_after(last_id: str, entries: Sequence[tuple[str, T]]) -> list[tuple[str, T]]:
    """Keep the entries after ``last_id`` (stream ids compare as ``(ms, seq)``)."""
    if not last_id:
        return list(entries)
    floor = entry_key(last_id)
    return [(entry_id, update) for entry_id, update in entries if entry_key(entry_id) > floor]
