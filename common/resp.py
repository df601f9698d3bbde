"""Encode Redis commands in RESP directly (pure): the hot write path's fast encoder.

redis-py builds each command argument by argument in Python; for batches of thousands of XADDs
that packing dominated the ingestor's profile. This encoder produces the same bytes with one
``bytes`` join per command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["encode_command", "encode_xadd"]


def _bulk(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_command(args: Iterable[str | bytes]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [_bulk(a) for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(parts)


def encode_xadd(stream: str, fields: Mapping[str, str], entry_id: str = "*") -> bytes:
    """``XADD stream entry_id field value ...``."""
    args: list[str | bytes] = ["XADD", stream, entry_id]
    for key, value in fields.items():
        args.append(key)
        args.append(value)
    return encode_command(args)
