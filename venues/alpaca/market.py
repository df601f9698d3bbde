"""Classify one Alpaca market-data frame into the values its messages carry (pure, no I/O).

An Alpaca frame is an array of messages, possibly mixing types and symbols.
:func:`classify_messages` answers with one item per message, in order: a :class:`Trade`
(``src`` = ``entry_id#n``, ``n`` the message's index in the array, so every trade of a frame
names itself), a :class:`Quote`, a :class:`VenueBar`, a :class:`TradeCorrection`, a
:class:`VenueStatus`, a :class:`BadMessage` (one message failed validation; the others still
count), or the name of the counter under which the message is passed over (``replies`` for
success/subscription, ``venue_errors`` for errors, ``ignored:<type>`` for types read but not
normalised: LULD bands, imbalances, news). A crypto order book message (``o``) is a
:class:`BookUpdate` (``r: true``: the whole book). A message of a type nobody knows is a
:class:`BadMessage`. A frame that does not decode at all raises :class:`DecodeError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import (
    BadMessage,
    BookUpdate,
    MessageItem,
    TradeCorrection,
    VenueBar,
    VenueStatus,
)
from tickpipe.common.schema import RawFrame
from tickpipe.venues.alpaca import wire as alpaca

__all__ = ["classify_messages"]

_CONTROL = {"success": "replies", "subscription": "replies", "error": "venue_errors"}
#: Message types read but not normalised yet, and the counter of each.
_UNNORMALISED = {
    "l": "ignored:lulds", "i": "ignored:imbalances",
    "n": "ignored:news",
}  # fmt: skip


def _text(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _correction(msg: Mapping[str, Any], *, ts_recv: int, entry_id: str) -> TradeCorrection:
    kind = "correction" if msg["T"] == "c" else "cancel"
    ts_event = alpaca.parse_time(msg.get("t"), f"{kind} time")
    if kind == "correction":
        original = ("oi", "op", "os", "oc")
        corrected = (
            _int_field(msg, "ci"),
            alpaca.decimal_text(msg.get("cp"), "corrected price"),
            alpaca.decimal_text(msg.get("cs"), "corrected size"),
            _text(msg, "cc"),
        )
    else:
        original = ("i", "p", "s", "")
        corrected = ("", "", "", "")
    return TradeCorrection(
        kind=kind,
        venue="alpaca",
        symbol=_symbol(msg),
        exchange=_text(msg, "x"),
        original_id=_int_field(msg, original[0]),
        original_price=alpaca.decimal_text(msg.get(original[1]), "original price"),
        original_size=alpaca.decimal_text(msg.get(original[2]), "original size"),
        original_conditions=_text(msg, original[3]) if original[3] else "",
        corrected_id=corrected[0],
        corrected_price=corrected[1],
        corrected_size=corrected[2],
        corrected_conditions=corrected[3],
        action=_text(msg, "a"),
        tape=_text(msg, "z"),
        entry_id=entry_id,
        ts_event=ts_event,
        ts_recv=ts_recv,
    )


def _int_field(msg: Mapping[str, Any], key: str) -> str:
    """Return an integer field as text; raise :class:`DecodeError` when it is not one."""
    value = msg.get(key)
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise DecodeError(f"field {key!r} must be a non-negative integer, got {value!r}")
    return str(int(text))


def _symbol(msg: Mapping[str, Any]) -> str:
    symbol = msg.get("S")
    if not isinstance(symbol, str) or not symbol or not symbol.isascii() or " " in symbol:
        raise DecodeError(f"symbol must be a non-empty ASCII string: {symbol!r}")
    return symbol


def _status(msg: Mapping[str, Any], *, ts_recv: int, entry_id: str) -> VenueStatus:
    return VenueStatus(
        venue="alpaca",
        symbol=_symbol(msg),
        status_code=_text(msg, "sc"),
        status_message=_text(msg, "sm"),
        reason_code=_text(msg, "rc"),
        reason_message=_text(msg, "rm"),
        tape=_text(msg, "z"),
        entry_id=entry_id,
        ts_event=alpaca.parse_time(msg.get("t"), "status time"),
        ts_recv=ts_recv,
    )


def _book(msg: Mapping[str, Any], *, ts_recv: int) -> BookUpdate:
    reset = msg.get("r", False)
    if not isinstance(reset, bool):
        raise DecodeError(f"order book field 'r' must be true or false, got {reset!r}")
    return BookUpdate(
        symbol=_symbol(msg),
        bids=alpaca.book_levels(msg.get("b", []), "bids"),
        asks=alpaca.book_levels(msg.get("a", []), "asks"),
        reset=reset,
        ts_event=alpaca.parse_time(msg.get("t"), "order book time"),
        ts_recv=ts_recv,
    )


def _message(n: int, msg: Any, entry_id: str, ts_recv: int) -> MessageItem:
    if not isinstance(msg, Mapping):
        raise DecodeError("message is not an object")
    t = msg.get("T")
    if t == "t":
        return alpaca.parse_trade(msg, ts_recv=ts_recv, src=f"{entry_id}#{n}")
    if t == "q":
        return alpaca.parse_quote(msg, ts_recv=ts_recv)
    if t in alpaca.BAR_INTERVAL:
        return VenueBar(alpaca.parse_bar(msg), updated=t == "u")
    if t in ("c", "x"):
        return _correction(msg, ts_recv=ts_recv, entry_id=entry_id)
    if t == "s":
        return _status(msg, ts_recv=ts_recv, entry_id=entry_id)
    if t == "o":
        return _book(msg, ts_recv=ts_recv)
    if isinstance(t, str) and t in _CONTROL:
        return _CONTROL[t]
    if not isinstance(t, str) or not t:
        raise DecodeError(f"message has no type T: {t!r}")
    if t in _UNNORMALISED:
        return _UNNORMALISED[t]
    raise DecodeError(f"unknown message type T={t!r}")


def classify_messages(entry_id: str, frame: RawFrame) -> list[MessageItem]:
    """Return one item per message of an Alpaca market-data frame (see the module docstring)."""
    if frame.kind == "rest":
        raise DecodeError(f"unknown REST channel {frame.channel!r}")
    payload = alpaca.decode_payload(frame.kind, frame.data)
    if isinstance(payload, Mapping):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise DecodeError("Alpaca frame must be a non-empty array of messages")
    out: list[MessageItem] = []
    for n, msg in enumerate(payload):
        try:
            out.append(_message(n, msg, entry_id, frame.ts_recv))
        except DecodeError as exc:
            kind = msg.get("T") if isinstance(msg, Mapping) else None
            out.append(BadMessage(f"message {n} (T={kind!r}): {exc}"))
    return out
