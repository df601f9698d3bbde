"""Define the normalised events and their redis-cli-readable stream encoding.

Every event is a frozen dataclass. ``to_fields`` turns it into one stream field per attribute with
a readable value (decimal strings stay as the venue sent them, timestamps are integer nanoseconds,
booleans are ``1``/``0``, absent values are empty strings); ``from_fields`` reverses it. Every
entry also carries ``v``, the schema version.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tickpipe.common.errors import DecodeError

__all__ = [
    "ORDER_TERMS",
    "SCHEMA_VERSION",
    "Bar",
    "Event",
    "OrderIntent",
    "OrderTerms",
    "OrderUpdate",
    "Quote",
    "RawFrame",
    "Signal",
    "Trade",
    "decode_fields",
    "order_terms",
]

SCHEMA_VERSION = "1"

E = TypeVar("E", bound="Event")


def text_of(value: Any) -> str:
    """Return a Redis reply value as text (bytes decoded as UTF-8, anything else ``str()``)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    """Turn a redis-py field mapping (bytes or str) into ``str -> str``."""
    return {text_of(k): text_of(v) for k, v in fields.items()}


class Event:
    """Base of the normalised events: generic field encoding driven by the dataclass fields."""

    kind: ClassVar[str] = ""

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        cached = cls.__dict__.get("_types_cache")
        if cached is None:
            hints = typing.get_type_hints(cls)
            # Keyword-only fields (inherited terms such as OrderTerms') go last, as declared.
            ordered = sorted(dataclasses.fields(cls), key=lambda f: f.kw_only is True)  # type: ignore[arg-type]
            cached = {f.name: hints[f.name] for f in ordered}
            cls._types_cache = cached  # type: ignore[attr-defined]
        return cached

    def to_fields(self) -> dict[str, str]:
        out = {"v": SCHEMA_VERSION}
        for name in self._field_types():
            value = getattr(self, name)
            if value is None:
                out[name] = ""
            elif isinstance(value, bool):
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_fields(cls: type[E], fields: Mapping[Any, Any]) -> E:
        data = decode_fields(fields)
        kwargs: dict[str, Any] = {}
        try:
            for name, typ in cls._field_types().items():
                if name not in data:
                    field = next(f for f in dataclasses.fields(cls) if f.name == name)  # type: ignore[arg-type]
                    if field.default is dataclasses.MISSING:
                        raise DecodeError(f"{cls.__name__}: missing field {name!r}")
                    continue
                kwargs[name] = _parse(data[name], typ)
        except ValueError as exc:
            raise DecodeError(f"{cls.__name__}: {exc}") from exc
        return cls(**kwargs)


def _parse(text: str, typ: Any) -> Any:
    optional = typing.get_origin(typ) in (typing.Union, types.UnionType)
    if optional:
        if text == "":
            return None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if typ is bool:
        return text == "1"
    if typ is int:
        return int(text)
    return text


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One entry of a ``raw`` stream: a venue frame as received, or a marker the ingestor wrote.

    ``kind`` is ``ws`` (a WebSocket frame), ``rest`` (a REST response such as a depth snapshot or
    trade backfill) or ``marker`` (connect, disconnect, gap). ``data`` is the frame text.
    """

    kind: str
    venue: str
    conn: str
    seq: int
    ts_recv: int
    data: str
    channel: str = ""

    def to_fields(self) -> dict[str, str]:
        return {
            "v": SCHEMA_VERSION,
            "kind": self.kind,
            "venue": self.venue,
            "conn": self.conn,
            "seq": str(self.seq),
            "ts_recv": str(self.ts_recv),
            "channel": self.channel,
            "data": self.data,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> RawFrame:
        try:
            d = decode_fields(fields)
            if "frames" in d:  # common.contract.RAW_FRAMES: read through raw_entry_frames
                raise DecodeError(
                    f"raw entry holds {d['frames']!r} frames, not all of them readable"
                )
            return cls(
                kind=d["kind"],
                venue=d["venue"],
                conn=d["conn"],
                seq=int(d["seq"]),
                ts_recv=int(d["ts_recv"]),
                data=d["data"],
                channel=d.get("channel", ""),
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise DecodeError(f"raw entry is malformed: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Trade(Event):
    """One trade print. ``side`` is the aggressor side: ``buy`` or ``sell``."""

    kind: ClassVar[str] = "trade"
    venue: str
    symbol: str
    trade_id: str
    price: str
    qty: str
    side: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0
    src: str = ""

    def to_fields(self) -> dict[str, str]:
        # Same fields and values as Event.to_fields, without its per-field type dispatch.
        return {
            "v": SCHEMA_VERSION,
            "venue": self.venue,
            "symbol": self.symbol,
            "trade_id": self.trade_id,
            "price": self.price,
            "qty": self.qty,
            "side": self.side,
            "ts_event": str(self.ts_event),
            "ts_recv": str(self.ts_recv),
            "ts_proc": str(self.ts_proc),
            "src": self.src,
        }


@dataclass(frozen=True, slots=True)
class Quote(Event):
    """Best bid and offer."""

    kind: ClassVar[str] = "quote"
    venue: str
    symbol: str
    bid_price: str
    bid_qty: str
    ask_price: str
    ask_qty: str
    update_id: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0

    def to_fields(self) -> dict[str, str]:
        # Same fields and values as Event.to_fields, without its per-field type dispatch.
        return {
            "v": SCHEMA_VERSION,
            "venue": self.venue,
            "symbol": self.symbol,
            "bid_price": self.bid_price,
            "bid_qty": self.bid_qty,
            "ask_price": self.ask_price,
            "ask_qty": self.ask_qty,
            "update_id": self.update_id,
            "ts_event": str(self.ts_event),
            "ts_recv": str(self.ts_recv),
            "ts_proc": str(self.ts_proc),
        }


@dataclass(frozen=True, slots=True)
class Bar(Event):
    """An OHLCV bar on exchange time; ``final`` is 0 while the bar may still change."""

    kind: ClassVar[str] = "bar"
    venue: str
    symbol: str
    interval: str
    ts_open: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    first_trade_id: str
    last_trade_id: str
    final: bool
    revision: int = 0
    ts_event: int = 0

    def to_fields(self) -> dict[str, str]:
        # Same fields and values as Event.to_fields, without its per-field type dispatch.
        return {
            "v": SCHEMA_VERSION,
            "venue": self.venue,
            "symbol": self.symbol,
            "interval": self.interval,
            "ts_open": str(self.ts_open),
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "trades": str(self.trades),
            "first_trade_id": self.first_trade_id,
            "last_trade_id": self.last_trade_id,
            "final": "1" if self.final else "0",
            "revision": str(self.revision),
            "ts_event": str(self.ts_event),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderTerms:
    """Name the order a decision asks for: the terms a strategy's spec and its signal share.

    ``order_type`` (``MARKET``/``LIMIT``/``STOP``/``STOP_LIMIT``/``TAKE_PROFIT``/
    ``TAKE_PROFIT_LIMIT``; empty: the deployment's ``TICKPIPE_ORDER_TYPE``),
    ``time_in_force`` (``GTC``/``IOC``/``FOK``; empty: ``GTC``),
    ``post_only``, ``quote_qty`` (a MARKET order's amount of the quote asset, ``qty`` then empty)
    and ``stop_price`` (a stop order's trigger) name the order;
    :func:`common.order_spec.terms_problem` checks them. ``replaces`` names a working order of
    the same strategy (its client order id, or the signal id that placed it) that this order
    replaces: the trader cancels it, and places this one once the cancel is confirmed.

    The fields are keyword-only, so a class that inherits them keeps its own positional
    parameters; a new term is declared here once and :func:`order_terms` carries it along.
    """

    order_type: str = ""
    time_in_force: str = ""
    post_only: bool = False
    quote_qty: str = ""
    stop_price: str = ""
    replaces: str = ""


#: The names of :class:`OrderTerms`' fields, in declaration order.
ORDER_TERMS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(OrderTerms))


def order_terms(source: OrderTerms) -> dict[str, Any]:
    """Return ``source``'s order terms as keyword arguments for another holder's constructor."""
    return {name: getattr(source, name) for name in ORDER_TERMS}


@dataclass(frozen=True, slots=True)
class Signal(Event, OrderTerms):
    """A trading decision. ``action`` is ``place`` or ``cancel``; ``cause`` lists event ids.

    The order it asks for is named by the inherited :class:`OrderTerms` (keyword-only). Its
    entry is :meth:`Event.to_fields`' (signals are rare): the terms follow ``ts_signal``, so a
    term declared in :class:`OrderTerms` reaches ``{P}:signals`` with nothing else to edit.
    """

    kind: ClassVar[str] = "signal"
    signal_id: str
    venue: str
    symbol: str
    strategy: str
    action: str
    side: str
    qty: str
    price: str
    reason: str
    cause: str
    ts_event: int
    ts_recv: int
    ts_signal: int


@dataclass(frozen=True, slots=True)
class OrderIntent(Event):
    """The trader's decision to send one order, recorded before it is sent.

    ``time_in_force`` is empty for a MARKET or STOP order (``GTC`` for a LIMIT or STOP_LIMIT
    one unless the signal named another); ``post_only`` asks the venue to refuse the order
    rather than match it; ``quote_qty`` is a MARKET order's quote amount (``qty`` then empty);
    ``stop_price`` a STOP or STOP_LIMIT order's trigger (``price`` is a STOP_LIMIT's limit).
    ``strategy`` is the signal's; ``replaces`` the client order id of the order this one
    replaces: cancelled, and confirmed so, before this one was sent, or (``in_place``) replaced
    by it in one step at the venue (Alpaca's ``PATCH``).

    These are :class:`OrderTerms`' fields, built from the signal's by
    :func:`trader.intent_rules.build_intent` through :func:`order_terms`. They are declared here
    rather than inherited because ``order_type`` is positional and required (resolved by then),
    and the fields' order is the intent entry's layout on ``{V}:orders``.
    """

    kind: ClassVar[str] = "intent"
    client_order_id: str
    signal_id: str
    venue: str
    symbol: str
    side: str
    order_type: str
    qty: str
    price: str | None
    ts_signal: int
    ts_intent: int
    time_in_force: str = ""
    post_only: bool = False
    quote_qty: str = ""
    stop_price: str = ""
    strategy: str = ""
    replaces: str = ""
    in_place: bool = False


@dataclass(frozen=True, slots=True)
class OrderUpdate(Event):
    """A change in an order's life as the venue reported it.

    ``reason`` says why for an order refused before or by the venue (empty otherwise).
    """

    kind: ClassVar[str] = "order_update"
    venue: str
    symbol: str
    client_order_id: str
    order_id: str
    side: str
    order_type: str
    status: str
    exec_type: str
    qty: str
    price: str
    filled_qty: str
    last_qty: str
    last_price: str
    cum_quote: str
    trade_id: str
    ts_event: int
    ts_recv: int
    ts_proc: int = 0
    reason: str = ""
