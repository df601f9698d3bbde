"""Encode a lane's batch as one fenced Lua call and decode raw stream replies (pure, no I/O).

A batch commit is one ``EVAL`` of :data:`COMMIT_SCRIPT`: the script checks that the lease key
still holds this member's name (else it writes nothing and answers ``0``), then XADDs every
output in order, SETs the checkpoint, XACKs the inputs and PEXPIREs the lease, atomically, and
answers ``1``. Every key is passed in ``KEYS`` and all of them carry the lane's hash tag, so the
call is legal on Redis Cluster. The acknowledged ids and the outputs travel as one JSON argument,
``[[ids...], [[field names...], ...], [[key index, names index, values...], ...]]``: each distinct
list of field names (in ``to_fields`` order) is sent once, each output as its values. The
checkpoint travels as its own binary argument.

:func:`stream_entries` and :func:`decode_flat_entries` turn an ``XREADGROUP`` reply read off the
wire (RESP2 ``[[stream, [[id, [field, value, ...]], ...]]]``) into the same
``(entry id, RawFrame or BadEntry)`` pairs :func:`processor.lanes.decode_entries` gives for
redis-py's parsed replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from common.schema import RawFrame
from processor.builders import new_raw_frame
from processor.entries import BadEntry
from processor.lanes import Commit, decode_entries

__all__ = [
    "COMMIT_SCRIPT",
    "LEASE_LOST",
    "commit_call",
    "decode_flat_entries",
    "stream_entries",
    "xreadgroup_args",
]

#: What :data:`COMMIT_SCRIPT` answers when the lease is not this member's.
LEASE_LOST = 0

COMMIT_SCRIPT = """\
-- KEYS: lease, checkpoint, input stream, output streams...
-- ARGV: instance, lease ms, group, checkpoint,
--       JSON [[acked ids], [[field names], ...], [[key index, names index, values...], ...]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local batch = cjson.decode(ARGV[5])
local shapes = {}
for i, fields in ipairs(batch[2]) do
  local args = {}
  for j = 1, #fields do
    args[2 * j - 1] = fields[j]
  end
  shapes[i] = args
end
local outputs = batch[3]
for i = 1, #outputs do
  local row = outputs[i]
  local args = shapes[row[2]]
  for j = 3, #row do
    args[2 * j - 4] = row[j]
  end
  redis.call('XADD', KEYS[row[1]], '*', unpack(args))
end
redis.call('SET', KEYS[2], ARGV[4])
local acked = batch[1]
for i = 1, #acked, 1000 do
  redis.call('XACK', KEYS[3], ARGV[3], unpack(acked, i, math.min(i + 999, #acked)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RAW_ORDER = [b"v", b"kind", b"venue", b"conn", b"seq", b"ts_recv", b"channel", b"data"]


def commit_call(
    *,
    lease_key: str,
    checkpoint_key: str,
    stream: str,
    group: str,
    instance: str,
    lease_ms: int,
    commit: Commit,
) -> tuple[list[str], list[str | bytes]]:
    """Return the ``KEYS`` and ``ARGV`` of :data:`COMMIT_SCRIPT` for ``commit``."""
    keys = [lease_key, checkpoint_key, stream]
    key_index: dict[str, int] = {}
    names: list[tuple[str, ...]] = []
    names_index: dict[tuple[str, ...], int] = {}
    rows: list[list[Any]] = []
    for key, fields in commit.outputs:
        position = key_index.get(key)
        if position is None:
            keys.append(key)
            position = key_index[key] = len(keys)
        shape = tuple(fields)
        shape_at = names_index.get(shape)
        if shape_at is None:
            names.append(shape)
            shape_at = names_index[shape] = len(names)
        rows.append([position, shape_at, *fields.values()])
    payload = orjson.dumps([commit.acked, names, rows])
    return keys, [instance, str(lease_ms), group, commit.checkpoint, payload]


def xreadgroup_args(
    group: str, consumer: str, stream: str, cursor: str, count: int, block_ms: int | None
) -> list[str]:
    """Return ``XREADGROUP GROUP g c COUNT n [BLOCK ms] STREAMS stream cursor``."""
    args = ["XREADGROUP", "GROUP", group, consumer, "COUNT", str(count)]
    if block_ms is not None:
        args += ["BLOCK", str(block_ms)]
    return [*args, "STREAMS", stream, cursor]


def stream_entries(reply: Any) -> list[Any]:
    """Return the entries of a one-stream ``XREADGROUP`` reply (RESP2 list or a map)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # {stream: entries}; redis-py's RESP3 form: {stream: [entries]}
        entries = next(iter(reply.values()))
        first = entries[0] if entries else None
        if isinstance(first, list) and (not first or isinstance(first[0], (list, tuple))):
            entries = first
    else:
        entries = reply[0][1]
    return list(entries or [])


def decode_flat_entries(entries: Sequence[Any]) -> list[tuple[str, RawFrame | BadEntry]]:
    """Turn wire entries ``[id, [field, value, ...]]`` into ``(entry id, RawFrame or BadEntry)``.

    The usual entry (exactly the fields :meth:`RawFrame.to_fields` writes) is decoded here;
    anything else goes through :func:`processor.lanes.decode_entries`, so the result is the same.
    """
    out: list[tuple[str, RawFrame | BadEntry]] = []
    append = out.append
    for raw_id, flat in entries:
        if flat and len(flat) == 16 and flat[::2] == _RAW_ORDER and type(raw_id) is bytes:
            # v kind venue conn seq ts_recv channel data: RawFrame.to_fields' order
            try:
                flat[1].decode()
                frame = new_raw_frame(
                    flat[3].decode(),
                    flat[5].decode(),
                    flat[7].decode(),
                    int(flat[9].decode()),
                    int(flat[11].decode()),
                    flat[15].decode(),
                    flat[13].decode(),
                )
            except (ValueError, AttributeError):
                pass  # the general path below gives the exact reason
            else:
                append((raw_id.decode(), frame))
                continue
        fields = None
        if flat:
            it = iter(flat)
            fields = dict(zip(it, it, strict=False))
        out.extend(decode_entries([(raw_id, fields)]))
    return out
