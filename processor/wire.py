"""Encode a lane's fenced reads and commits as Lua calls and decode raw stream replies (pure).

A batch commit is one ``EVAL`` of :data:`COMMIT_SCRIPT`: the script checks that the lease key
still holds this member's name (else it writes nothing and answers ``0``), then XADDs every
output in order, SETs the checkpoint, XACKs the inputs and PEXPIREs the lease, atomically, and
answers ``1``. Every key is passed in ``KEYS`` and all of them carry the lane's hash tag, so the
call is legal on Redis Cluster. The acknowledged ids and the outputs travel as one JSON argument,
``[[ids...], [[field names...], ...], [[key index, names index, values...], ...]]``: each distinct
list of field names (in ``to_fields`` order) is sent once, each output as its values. The
checkpoint travels as its own binary argument.

Reads are fenced by the lease too, in one of two forms with the same effect: a member whose lease
is gone when Redis serves the read receives nothing.

* On a member's own connection the read is one write of six pipelined commands
  (:func:`fenced_read_commands`): ``WATCH`` the lease and the member's fence key, ``EVAL``
  :data:`GATE_SCRIPT` (answers 1 when the lease is this member's, else touches the fence key),
  then ``MULTI XREADGROUP ... COUNT n XREVRANGE ... COUNT 1 EXEC``. A gate that said no, or any
  change of the lease after the ``WATCH`` (a takeover), makes ``EXEC`` run nothing. The entries
  travel natively, never through Lua, which keeps Redis' cost of a read what it was.
* Through redis-py (a cluster client) it is one ``EVAL`` of :data:`READ_SCRIPT`, which checks
  the lease and then runs ``XREADGROUP`` inside the script.

Both never block and both also give the newest entry id, after which an idle member waits with a
plain ``XREAD BLOCK`` (:func:`xread_args`), which claims nothing.

:func:`stream_entries` and :func:`decode_flat_entries` turn an ``XREADGROUP`` reply read off the
wire (RESP2 ``[[stream, [[id, [field, value, ...]], ...]]]``) into the same
``(entry id, RawFrame or BadEntry)`` pairs :func:`processor.lanes.decode_entries` gives for
redis-py's parsed replies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tickpipe.common.builders import new_raw_frame
from tickpipe.common.contract import (
    RAW_FIELDS,
    RAW_FRAMES,
    RAW_PER_FRAME,
    frame_id,
    packed_field,
)
from tickpipe.common.schema import RawFrame
from tickpipe.processor.entries import BadEntry
from tickpipe.processor.lanes import Commit, decode_entries

__all__ = [
    "COMMIT_SCRIPT",
    "GATE_SCRIPT",
    "LEASE_LOST",
    "READ_SCRIPT",
    "commit_call",
    "decode_flat_entries",
    "fenced_read_commands",
    "read_call",
    "stream_entries",
    "xread_args",
]

#: What :data:`COMMIT_SCRIPT` and :data:`READ_SCRIPT` answer when the lease is not this member's.
LEASE_LOST = 0

GATE_SCRIPT = """\
-- KEYS: lease, this member's fence key; ARGV: instance
-- Answers 1 when the lease is this member's. Otherwise touches the fence key, which the member
-- WATCHes, so that the EXEC of its read that follows runs nothing, and answers 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
redis.call('SET', KEYS[2], '1', 'PX', 1000)
return 0
"""

READ_SCRIPT = """\
-- KEYS: lease, input stream; ARGV: instance (also the consumer), group, count, cursor
-- Answers 0 (lease lost), the entries read, or the newest entry id when there were none.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[1], 'COUNT', ARGV[3],
  'STREAMS', KEYS[2], ARGV[4])
local entries = nil
if reply then  -- {{stream, entries}}; some servers flatten the one stream to {stream, entries}
  if type(reply[1]) == 'table' then entries = reply[1][2] else entries = reply[2] end
end
if entries and #entries > 0 then
  return entries
end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #newest == 0 then
  return '0-0'
end
return newest[1][1]
"""

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

#: The field names of a raw entry as they come off the wire, in the order they are written.
_RAW_ORDER = [name.encode() for name in RAW_FIELDS]
#: Where each field's value sits in a flat ``[field, value, ...]`` entry.
_AT = {name: 2 * i + 1 for i, name in enumerate(RAW_FIELDS)}
_V, _KIND, _VENUE, _CONN = _AT["v"], _AT["kind"], _AT["venue"], _AT["conn"]
_SEQ, _TS_RECV, _CHANNEL, _DATA = _AT["seq"], _AT["ts_recv"], _AT["channel"], _AT["data"]
_FLAT_LEN = 2 * len(RAW_FIELDS)
_FRAMES = RAW_FRAMES.encode()
#: The field names of a packed entry's further frames, by how many frames it holds.
_PACKED_ORDER: dict[int, list[bytes]] = {}


def _packed_order(n: int) -> list[bytes]:
    names = _PACKED_ORDER.get(n)
    if names is None:
        names = [packed_field(name, k).encode() for k in range(1, n) for name in RAW_PER_FRAME]
        if len(_PACKED_ORDER) < 1024:
            _PACKED_ORDER[n] = names
    return names


def _packed(entry_id: str, flat: list[Any]) -> list[tuple[str, RawFrame | BadEntry]]:
    """Decode a packed entry of exactly the layout the ingestor writes; raise ValueError if not."""
    n = int(flat[_FLAT_LEN + 1])
    rest = flat[_FLAT_LEN + 2 :]
    if n < 2 or len(rest) != 6 * (n - 1) or rest[::2] != _packed_order(n):
        raise ValueError("not the packed layout")
    flat[_V].decode()
    kind, venue, conn = flat[_KIND].decode(), flat[_VENUE].decode(), flat[_CONN].decode()
    channel = flat[_CHANNEL].decode()
    out: list[tuple[str, RawFrame | BadEntry]] = [
        (
            entry_id,
            new_raw_frame(
                kind, venue, conn, int(flat[_SEQ]), int(flat[_TS_RECV]), flat[_DATA].decode(),
                channel,
            ),
        )
    ]  # fmt: skip
    for k in range(1, n):
        at = 6 * (k - 1)
        out.append(
            (
                frame_id(entry_id, k),
                new_raw_frame(
                    kind, venue, conn, int(rest[at + 1]), int(rest[at + 3]),
                    rest[at + 5].decode(), channel,
                ),
            )
        )  # fmt: skip
    return out


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


def read_call(
    *, lease_key: str, stream: str, group: str, instance: str, cursor: str, count: int
) -> tuple[list[str], list[str]]:
    """Return the ``KEYS`` and ``ARGV`` of :data:`READ_SCRIPT`."""
    return [lease_key, stream], [instance, group, str(count), cursor]


def fenced_read_commands(
    *,
    lease_key: str,
    fence_key: str,
    stream: str,
    group: str,
    instance: str,
    cursor: str,
    count: int,
) -> list[list[str]]:
    """Return the six commands of a fenced read on a member's own connection (see above).

    Their replies: ``OK``, the gate's 1 or 0, ``OK``, ``QUEUED``, ``QUEUED``, and ``EXEC``'s
    ``[XREADGROUP reply, XREVRANGE reply]``, or nil when the fence stopped it.
    """
    read = ["XREADGROUP", "GROUP", group, instance, "COUNT", str(count), "STREAMS", stream, cursor]
    return [
        ["WATCH", lease_key, fence_key],
        ["EVAL", GATE_SCRIPT, "2", lease_key, fence_key, instance],
        ["MULTI"],
        read,
        ["XREVRANGE", stream, "+", "-", "COUNT", "1"],
        ["EXEC"],
    ]


def xread_args(stream: str, after_id: str, block_ms: int) -> list[str]:
    """Return ``XREAD COUNT 1 BLOCK ms STREAMS stream after_id``: wait, claiming nothing."""
    return ["XREAD", "COUNT", "1", "BLOCK", str(block_ms), "STREAMS", stream, after_id]


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

    The usual entries (exactly the fields :meth:`RawFrame.to_fields` writes, or a packed entry of
    several frames, each given its frame id: :mod:`common.contract`) are decoded here; anything
    else goes through :func:`processor.lanes.decode_entries`, so the result is the same.
    """
    out: list[tuple[str, RawFrame | BadEntry]] = []
    append = out.append
    order, size = _RAW_ORDER, _FLAT_LEN
    v, kind, venue, conn, seq, ts_recv, channel, data = (
        _V, _KIND, _VENUE, _CONN, _SEQ, _TS_RECV, _CHANNEL, _DATA
    )  # fmt: skip
    for raw_id, flat in entries:
        if not flat or type(raw_id) is not bytes:
            pass
        elif len(flat) == size and flat[::2] == order:
            # exactly the fields of common.contract.RAW_FIELDS, in that order
            try:
                flat[v].decode()
                frame = new_raw_frame(
                    flat[kind].decode(),
                    flat[venue].decode(),
                    flat[conn].decode(),
                    int(flat[seq].decode()),
                    int(flat[ts_recv].decode()),
                    flat[data].decode(),
                    flat[channel].decode(),
                )
            except (ValueError, AttributeError):
                pass  # the general path below gives the exact reason
            else:
                append((raw_id.decode(), frame))
                continue
        elif len(flat) > size + 2 and flat[size] == _FRAMES and flat[:size:2] == order:
            # a packed entry: the first frame's fields, ``frames n``, then n-1 more frames
            try:
                frames = _packed(raw_id.decode(), flat)
            except (ValueError, AttributeError, IndexError):
                pass
            else:
                out += frames
                continue
        fields = None
        if flat:
            it = iter(flat)
            fields = dict(zip(it, it, strict=False))
        out.extend(decode_entries([(raw_id, fields)]))
    return out
