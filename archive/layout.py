"""Place stream entries in the archive's Parquet layout and decide when a segment rolls (pure).

The archive is a tree of Parquet files partitioned Hive-style::

    <root>/venue=<venue>/kind=<kind>/symbol=<symbol>/date=<YYYY-MM-DD>/<source>_<first>_<last>.parquet

``kind`` is the stream's name inside its partition with ``:`` as ``-`` (``trades``, ``bars-1m``,
``raw``, ``private-raw``, ``orders``...); ``symbol`` the entry's symbol (``/`` as ``-``), or
:data:`NO_SYMBOL` for an entry of none (markers, replies, a frame of several symbols); ``date``
the UTC day of the entry's time on its :func:`index_field` (``ts_event``, ``ts_open`` for bars,
``ts_recv`` for raw frames, ``ts`` for orders; the entry id's time when it has none). The file
name says which stream it came from (``source``: ``binance-0`` or the venue) and the stream ids
of the segment it belongs to, so no two segments ever write the same file.

Each file has the columns ``_id`` (the stream entry id), ``_source`` (the partition or venue)
and ``_ts`` (int64 ns: the index time, whose row-group statistics let readers skip what lies
outside a range), then every field of the entries as text, as they were in Redis.

A :class:`Segment` collects one stream's entries in order until it reaches its size or age
(:meth:`Segment.due`); it is then written as one file per directory it touches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from tickpipe.common.contract import RAW_FRAMES, raw_entry_frames

__all__ = [
    "NO_SYMBOL",
    "Placed",
    "Segment",
    "directory",
    "file_name",
    "index_field",
    "index_time",
    "kind_of",
    "path_symbol",
    "raw_symbol",
]

#: The ``symbol=`` directory of entries that name no symbol.
NO_SYMBOL = "_"
_COMBINED = '{"stream":"'
_DAY_NS = 86_400_000_000_000
_DAYS: dict[int, str] = {}
_RAW_KINDS = frozenset({"raw", "private-raw"})


def kind_of(stream: str) -> str:
    """The archive kind of a stream key: what follows its ``{tag}:``, with ``:`` as ``-``."""
    return stream.rpartition("}:")[2].replace(":", "-")


def index_field(kind: str) -> str:
    """The field an entry of ``kind`` is ordered and partitioned by."""
    if kind in _RAW_KINDS:
        return "ts_recv"
    if kind.startswith("bars-"):
        return "ts_open"
    if kind == "orders":
        return "ts"
    return "ts_event"


def _id_ns(entry_id: str) -> int:
    return int(entry_id.partition("-")[0]) * 1_000_000


def index_time(kind: str, entry_id: str, fields: Mapping[str, str]) -> int:
    """The entry's time on :func:`index_field` (ns); the entry id's time when it has none."""
    text = fields.get(index_field(kind)) or (fields.get("ts_intent") if kind == "orders" else "")
    if text:
        try:
            return int(text)
        except ValueError:
            pass
    return _id_ns(entry_id)


def path_symbol(symbol: str) -> str:
    """A symbol as a directory name (``BTC/USD`` -> ``BTC-USD``)."""
    return symbol.replace("/", "-") if symbol else NO_SYMBOL


def _symbol_in(obj: object) -> str | None:
    if isinstance(obj, list):
        found = {_symbol_in(item) for item in obj}
        return found.pop() if len(found) == 1 else None
    if not isinstance(obj, dict):
        return None
    stream = obj.get("stream")
    if isinstance(stream, str) and "@" in stream:
        return stream.partition("@")[0].upper()
    for name in ("s", "S", "symbol"):
        value = obj.get(name)
        if isinstance(value, str) and value:
            return value.upper()
    if "data" in obj:
        return _symbol_in(obj["data"])
    return None


def raw_symbol(fields: Mapping[str, str]) -> str | None:
    """The one symbol a raw frame is about, if it names exactly one (else ``None``).

    It looks where venues put it in JSON text: a combined-stream name (``btcusdt@trade``), a
    ``s``/``S``/``symbol`` field of the frame, of its ``data``, or of every message of an array.
    Binary frames and markers have none.
    """
    data = fields.get("data", "")
    if fields.get("kind") not in ("ws", "rest") or not data.startswith(("{", "[")):
        return None
    if data.startswith(_COMBINED):  # the common case, read without decoding the frame
        name, at, _ = data[len(_COMBINED) : len(_COMBINED) + 40].partition("@")
        if at and name.isalnum():
            return name.upper()
    try:
        return _symbol_in(orjson.loads(data))
    except orjson.JSONDecodeError:
        return None


def _day(ts_ns: int) -> str:
    number = ts_ns // _DAY_NS
    day = _DAYS.get(number)
    if day is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        day = _DAYS[number] = dt.date.fromordinal(719_163 + number).isoformat()  # 1970-01-01
    return day


def directory(venue: str, kind: str, symbol: str, ts_ns: int) -> str:
    """The directory (relative to the archive root) of an entry."""
    return f"venue={venue}/kind={kind}/symbol={path_symbol(symbol)}/date={_day(ts_ns)}"


def file_name(source: str, first_id: str, last_id: str) -> str:
    """The name of a segment's file in one directory."""
    return f"{source.replace(':', '-')}_{first_id}_{last_id}.parquet"


@dataclass
class Placed:
    """The rows of one directory in a segment, in stream order."""

    ids: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    rows: list[Mapping[str, str]] = field(default_factory=list)


@dataclass
class Segment:
    """One stream's entries since its last roll, grouped by the directory each belongs in."""

    stream: str
    venue: str
    source: str  # the partition (``binance:0``) or the venue of a venue-wide stream
    opened_ns: int
    kind: str = ""
    first_id: str = ""
    last_id: str = ""
    entries: int = 0
    size: int = 0  # bytes of field names and values held
    places: dict[str, Placed] = field(default_factory=dict)
    stream_ids: list[str] = field(default_factory=list)  # the stream entries held, in order

    def __post_init__(self) -> None:
        self.kind = self.kind or kind_of(self.stream)

    def add(self, entry_id: str, fields: Mapping[str, str]) -> None:
        """Hold one entry (ids must arrive in stream order): one row, or one row per frame of a
        packed raw entry, each with its frame id (:func:`common.contract.raw_entry_frames`)."""
        self.stream_ids.append(entry_id)
        if self.kind in _RAW_KINDS and RAW_FRAMES in fields:
            for frame_id, one in raw_entry_frames(entry_id, fields):
                self._add_row(frame_id, one)
            self.last_id = entry_id
            return
        self._add_row(entry_id, fields)

    def _add_row(self, entry_id: str, fields: Mapping[str, str]) -> None:
        ts = index_time(self.kind, entry_id, fields)
        if self.kind in _RAW_KINDS:
            symbol = raw_symbol(fields) or NO_SYMBOL
        else:
            symbol = fields.get("symbol") or NO_SYMBOL
        place = self.places.setdefault(directory(self.venue, self.kind, symbol, ts), Placed())
        place.ids.append(entry_id)
        place.times.append(ts)
        place.rows.append(fields)
        if not self.entries:
            self.first_id = entry_id
        self.last_id = entry_id
        self.entries += 1
        self.size += sum(map(len, fields.values())) + 16 * len(fields) + 32

    def due(self, now_ns: int, max_bytes: int, max_age_ns: int) -> bool:
        """Tell whether the segment should be written now: big enough, or open long enough."""
        if not self.entries:
            return False
        return self.size >= max_bytes or now_ns - self.opened_ns >= max_age_ns

    def ids(self) -> list[str]:
        """Every stream entry id the segment holds, in stream order (what is acknowledged): a
        packed raw entry's once, never its frames' ids (``ms-seq.k``, which Redis refuses)."""
        return list(self.stream_ids)

    def files(self) -> dict[str, Placed]:
        """Each file the segment becomes (path relative to the root) and its rows."""
        name = file_name(self.source, self.first_id, self.last_id)
        return {f"{folder}/{name}": place for folder, place in sorted(self.places.items())}
