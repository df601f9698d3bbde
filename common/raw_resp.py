"""Encode raw entries for Redis: one ``XADD`` per frame in RESP, built from the contract (pure).

The raw entry's layout is :data:`common.contract.RAW_FIELDS`. The arguments that stay the same
for a connection's channel are encoded once per (stream, kind, venue, conn, channel) and
reused, so each frame costs one formatting of its sequence number, receive time and data. The
ingestor's writer and ``tickpipe replay`` both append through :func:`encode_raw_xadd`.
"""

from __future__ import annotations

from common.contract import RAW_FIELDS, RAW_PER_FRAME
from common.resp import encode_command
from common.schema import SCHEMA_VERSION, RawFrame

__all__ = ["CHANNEL_FIELDS", "FRAME_FIELDS", "channel_values", "encode_raw_xadd"]


#: The raw entry's fields that stay the same for a connection's channel, and those that change
#: with every frame, in entry order (:mod:`common.contract`). The encoders below take the frame's
#: values in these orders; the checks under them fail at import if the contract moves a field.
CHANNEL_FIELDS = tuple(name for name in RAW_FIELDS if name not in RAW_PER_FRAME)
FRAME_FIELDS = tuple(name for name in RAW_FIELDS if name in RAW_PER_FRAME)
if CHANNEL_FIELDS != ("v", "kind", "venue", "conn", "channel") or FRAME_FIELDS != (
    "seq",
    "ts_recv",
    "data",
):
    raise TypeError(f"the raw entry layout changed: {RAW_FIELDS}; update common.raw_resp")


def channel_values(frame: RawFrame) -> tuple[str, str, str, str, str]:
    """Return the values of :data:`CHANNEL_FIELDS` for ``frame``."""
    return (SCHEMA_VERSION, frame.kind, frame.venue, frame.conn, frame.channel)


#: Pre-encoded RESP around the per-frame values, by (stream, kind, venue, conn, channel).
_TEMPLATES: dict[tuple[str, str, str, str, str], tuple[bytes, bytes, bytes, bytes]] = {}
_TEMPLATES_MAX = 1024


def _template(stream: str, frame: RawFrame) -> tuple[bytes, bytes, bytes, bytes]:
    """Return the bytes before, between and after the per-frame values, walking the layout."""
    constant = dict(zip(CHANNEL_FIELDS, channel_values(frame), strict=True))
    chunks: list[bytes] = []
    current = b"*%d\r\n" % (3 + 2 * len(RAW_FIELDS)) + encode_command(["XADD", stream, "*"])[4:]
    for name in RAW_FIELDS:
        current += encode_command([name])[4:]
        if name in constant:
            current += encode_command([constant[name]])[4:]
        else:
            chunks.append(current)
            current = b""
    chunks.append(current)
    c0, c1, c2, c3 = chunks
    return c0, c1, c2, c3


def encode_raw_xadd(stream: str, frame: RawFrame) -> bytes:
    """Encode ``XADD stream * <frame.to_fields()>`` in RESP, fields in the same order.

    The same bytes as :func:`common.resp.encode_xadd` of ``frame.to_fields()``; the arguments
    that stay the same for a whole connection are encoded once and reused, so each frame costs
    one formatting of its sequence number, receive time and data.
    """
    key = (stream, frame.kind, frame.venue, frame.conn, frame.channel)
    parts = _TEMPLATES.get(key)
    if parts is None:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()  # connections come and go: keep only recent ones
        parts = _TEMPLATES[key] = _template(stream, frame)
    data = frame.data.encode()
    seq = b"%d" % frame.seq
    ts = b"%d" % frame.ts_recv
    return b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s" % (
        parts[0],
        len(seq),
        seq,
        parts[1],
        len(ts),
        ts,
        parts[2],
        len(data),
        data,
        parts[3],
    )
