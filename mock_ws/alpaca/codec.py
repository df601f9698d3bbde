"""Encode and decode Alpaca frames: JSON text or msgpack binary, timestamps per mode (pure).

Messages are built as plain dicts whose time values are :class:`Ts` (integer nanoseconds).
In JSON mode a ``Ts`` becomes an RFC 3339 UTC string with up to nine fractional digits
(``"2021-02-22T15:51:45.335689322Z"``; whole seconds carry no fraction); in msgpack mode it
becomes a msgpack Timestamp (extension type -1), as the venue sends and alpaca-py expects.
Client frames may be JSON text or msgpack binary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import orjson

from tickpipe.common.errors import DecodeError
from tickpipe.venues.alpaca.session import decode_frame
from tickpipe.venues.alpaca.wire import parse_rfc3339 as parse_rfc3339_time
from tickpipe.venues.alpaca.wire import rfc3339

__all__ = [
    "Ts",
    "decode_client",
    "encode_data_frame",
    "encode_trading_frame",
    "parse_rfc3339",
    "rest_object",
    "rfc3339",
]


class Ts:
    """Hold a point in time, in integer nanoseconds since the Unix epoch.

    Deliberately not a dataclass: orjson would serialise a dataclass itself instead of
    asking the ``default`` hook.
    """

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ts) and other.ns == self.ns

    def __hash__(self) -> int:
        return hash(self.ns)

    def __repr__(self) -> str:
        return f"Ts({self.ns})"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 time or a ``YYYY-MM-DD`` date into nanoseconds; raise ``ValueError``."""
    value = text.strip()
    if len(value) == 10:  # a date: its midnight UTC
        value += "T00:00:00Z"
    return parse_rfc3339_time(value)


def rest_object(message: Mapping[str, Any]) -> dict[str, Any]:
    """Render a stream message as the REST market-data API answers it: without its ``T`` and
    ``S`` keys, times as RFC 3339 strings."""
    return {
        k: rfc3339(v.ns) if isinstance(v, Ts) else v for k, v in message.items() if k not in "TS"
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Ts):
        return rfc3339(value.ns)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, Ts):
        return msgpack.Timestamp.from_unix_nano(value.ns)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_data_frame(messages: list[dict[str, Any]], *, use_msgpack: bool) -> str | bytes:
    """Encode one market-data frame (an array of messages): JSON text or msgpack bytes."""
    if use_msgpack:
        packed: bytes = msgpack.packb(messages, default=_msgpack_default, datetime=False)
        return packed
    return orjson.dumps(messages, default=_json_default).decode()


def encode_trading_frame(message: dict[str, Any], *, use_msgpack: bool) -> bytes:
    """Encode a trading-stream message for a binary frame: JSON bytes (as paper) or msgpack."""
    if use_msgpack:
        packed: bytes = msgpack.packb(message, default=_json_default)
        return packed
    return orjson.dumps(message, default=_json_default)


def decode_client(data: str | bytes) -> Any:
    """Decode a client frame by the venue's rule (:func:`venues.alpaca.session.decode_frame`:
    text as JSON, binary as JSON or msgpack); raise ``ValueError``."""
    try:
        return decode_frame(data)
    except DecodeError as exc:
        raise ValueError(str(exc)) from None
