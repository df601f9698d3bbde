"""Write and read a lane's checkpoint blob (pure, no I/O).

A checkpoint is a msgpack map with its version ``v`` and its owner (the partition of a market
lane, the venue of a private lane). :func:`dump` writes one; :func:`load` checks the version and
the owner and hands the map to the lane's own reader, so every checkpoint is refused the same
way: one :class:`~common.errors.DecodeError` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, TypeVar

import msgpack

from tickpipe.common.errors import DecodeError

__all__ = ["dump", "load"]

T = TypeVar("T")


def dump(version: int, fields: dict[str, Any]) -> bytes:
    """Return the checkpoint blob of ``fields`` (a fresh map: ``v`` is added to it, not copied:
    a market lane writes one each batch)."""
    fields["v"] = version
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


def load(
    blob: bytes,
    read: Callable[[dict[Any, Any]], T],
    *,
    what: str,
    versions: Container[int],
    owner_key: str,
    owner: str,
) -> T:
    """Return ``read(fields)`` of a blob :func:`dump` wrote with one of ``versions`` for ``owner``.

    A blob of another version or owner, or one ``read`` cannot take (a missing or mistyped field),
    raises :class:`DecodeError` starting with ``what``."""
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
        if not isinstance(data, dict) or data.get("v") not in versions:
            raise DecodeError(f"{what} has an unknown version")
        if data[owner_key] != owner:
            raise DecodeError(f"{what} belongs to {data[owner_key]!r}, not {owner!r}")
        return read(data)
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise DecodeError(f"{what} is malformed: {exc!r}") from exc
