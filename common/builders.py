"""Build the hot path's frozen events without their generated ``__init__`` (pure, no I/O).

A frozen dataclass sets every field through ``object.__setattr__`` by name; for the three objects
made per raw frame (the :class:`~common.schema.RawFrame` read, the
:class:`~common.schema.Trade` parsed from it and the :class:`~common.messages.Trades` that
carries it) that is a visible share of the processor's time.
These builders set the same slots through their descriptors: the objects are equal to the ones
the constructors make (a unit test checks it, and the field order is checked at import, so a
schema change cannot silently shift a value into the wrong field).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tickpipe.common.messages import Trades
from tickpipe.common.schema import RawFrame, Trade

__all__ = ["new_raw_frame", "new_trade", "one_trade"]

_RAW_FIELDS = ("kind", "venue", "conn", "seq", "ts_recv", "data", "channel")
_TRADE_FIELDS = (
    "venue",
    "symbol",
    "trade_id",
    "price",
    "qty",
    "side",
    "ts_event",
    "ts_recv",
    "ts_proc",
    "src",
)


def _setters(cls: type, names: tuple[str, ...]) -> list[Any]:
    fields = tuple(f.name for f in dataclasses.fields(cls))
    if fields != names or "__post_init__" in vars(cls) or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} changed: fields {fields}, expected {names}")
    return [vars(cls)[name].__set__ for name in names]


_new = object.__new__
_r0, _r1, _r2, _r3, _r4, _r5, _r6 = _setters(RawFrame, _RAW_FIELDS)
_t0, _t1, _t2, _t3, _t4, _t5, _t6, _t7, _t8, _t9 = _setters(Trade, _TRADE_FIELDS)
_s0, _s1, _s2 = _setters(Trades, ("items", "aggregate", "rejected"))


def new_raw_frame(
    kind: str, venue: str, conn: str, seq: int, ts_recv: int, data: str, channel: str
) -> RawFrame:
    """Return ``RawFrame(kind, venue, conn, seq, ts_recv, data, channel)``."""
    frame: RawFrame = _new(RawFrame)
    _r0(frame, kind)
    _r1(frame, venue)
    _r2(frame, conn)
    _r3(frame, seq)
    _r4(frame, ts_recv)
    _r5(frame, data)
    _r6(frame, channel)
    return frame


def new_trade(
    venue: str,
    symbol: str,
    trade_id: str,
    price: str,
    qty: str,
    side: str,
    ts_event: int,
    ts_recv: int,
    ts_proc: int,
    src: str,
) -> Trade:
    """Return ``Trade(venue, symbol, trade_id, price, qty, side, ts_event, ts_recv, ts_proc,
    src)``."""
    trade: Trade = _new(Trade)
    _t0(trade, venue)
    _t1(trade, symbol)
    _t2(trade, trade_id)
    _t3(trade, price)
    _t4(trade, qty)
    _t5(trade, side)
    _t6(trade, ts_event)
    _t7(trade, ts_recv)
    _t8(trade, ts_proc)
    _t9(trade, src)
    return trade


def one_trade(trade: Trade) -> Trades:
    """Return ``Trades((trade,))``: one live trade of a frame, not aggregate, none rejected."""
    trades: Trades = _new(Trades)
    _s0(trades, (trade,))
    _s1(trades, False)
    _s2(trades, ())
    return trades
