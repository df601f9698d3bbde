"""Encode and decode Alpaca frames: JSON text or msgpack binary, timestamps per mode (pure).

Messages are built as plain dicts whose time values are :class:`Ts` (integer nanoseconds).
In JSON mode a ``Ts`` becomes an RFC 3339 UTC string with up to nine fractional digits
(``"2021-02-22T15:51:45.335689322Z"``; whole seconds carry no fraction); in msgpack mode it
becomes a msgpack Timestamp (extension type -1), as the venue sends and alpaca-py expects.
Client frames may be JSON text or msgpack binary.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import orjson

from venues.alpaca.wire import parse_rfc3339 as parse_rfc3339_time

__all__ = [
    "Ts",
    "decode_client",
    "encode_data_frame",
    "encode_trading_frame",
    "parse_rfc3339",
    "rfc3339",
]

NS_PER_S = 1_000_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


def rfc3339(ns: int) -> str:
    """Format nanoseconds since the epoch as an RFC 3339 UTC string (trailing zeros dropped)."""
    seconds, frac = divmod(ns, NS_PER_S)
    base = (_EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    return f"{base}.{frac:09d}".rstrip("0") + "Z"


def parse_rfc3339(text: str) -> int:
    """Parse an RFC 3339 time or a ``YYYY-MM-DD`` date into nanoseconds; raise ``ValueError``."""
    value = text.strip()
    if len(value) == 10:
        day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        return int((day - _EPOCH).total_seconds()) * NS_PER_S
    return parse_rfc3339_time(value)


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
    """Decode a client frame: text as JSON, binary as msgpack (or JSON); raise ``ValueError``."""
    if isinstance(data, str):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
    try:
        return msgpack.unpackb(data, raw=False, timestamp=0)
    except Exception:
        pass
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("frame is neither msgpack nor JSON") from None
