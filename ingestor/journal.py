"""Spill raw frames to a local append-only journal while Redis cannot take them.

Layout: a directory of numbered segment files ``00000001.jnl``, ``00000002.jnl``..., each a
sequence of msgpack records ``[stream, kind, venue, conn, seq, ts_recv, data, channel]``. New
records go to the newest segment; draining rolls to a fresh segment and reads the older ones in
order, so frames leave the journal in the order they entered it.

Disk cap: records that would push the journal past ``max_bytes`` are dropped and counted per
stream; once there is room again a ``gap`` marker record saying how many frames were dropped (and
the receive-time range) is journaled before the next record of that stream, and
:meth:`Journal.take_gaps` hands out the markers still owed when the journal empties.

Durability (fsync policy): every append is written to the OS at once (a crash of the process loses
nothing already appended); the file is fsynced at most once per ``fsync_interval_s`` and when a
segment is closed, so a power loss can lose at most that last interval. A segment drained only in
part before a crash is drained again from its start on the next run: such entries repeat with the
same ``(conn, seq)``, which identifies them downstream.

A lock file keeps a second ingestor from sharing the directory.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack
import orjson

from common.contract import MarkerEvent, RawKind
from common.schema import RawFrame

__all__ = ["Journal", "JournalLocked"]

_SUFFIX = ".jnl"
Item = tuple[str, RawFrame]


class JournalLocked(RuntimeError):
    """Another process holds the journal directory."""


@dataclass(slots=True)
class _Dropped:
    venue: str
    count: int
    first_ts: int
    last_ts: int


class Journal:
    """An append-only, capped, ordered spill file set under one directory."""

    def __init__(
        self, directory: str | Path, *, max_bytes: int, fsync_interval_s: float = 1.0
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.fsync_interval_s = fsync_interval_s
        self._lock = open(self.directory / "lock", "a+b")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise JournalLocked(f"{self.directory} is used by another ingestor") from None
        self._dropped: dict[str, _Dropped] = {}
        self._offsets: dict[Path, int] = {}
        self._out: IO[bytes] | None = None
        self._out_path: Path | None = None
        self._synced_at = time.monotonic()
        self.size = sum(p.stat().st_size for p in self._segments())
        self.dropped_total = 0
        self.records_written = 0

    # -- writing -------------------------------------------------------------------------------
    def append(self, items: list[Item]) -> int:
        """Append ``items`` in order; return how many were kept (the rest are counted dropped)."""
        if not items:
            return 0
        chunks: list[bytes] = []
        added = kept = 0
        for stream, frame in items:
            record = _pack(stream, frame)
            if self.size + added + len(record) > self.max_bytes:
                self._drop(stream, frame)
                continue
            owed = self._dropped.pop(stream, None)
            if owed is not None:
                marker = _pack(stream, _gap_frame(owed))
                chunks.append(marker)
                added += len(marker)
            chunks.append(record)
            added += len(record)
            kept += 1
        if chunks:
            out = self._writer()
            out.write(b"".join(chunks))
            out.flush()
            self.size += added
            self.records_written += kept
            if time.monotonic() - self._synced_at >= self.fsync_interval_s:
                self._sync()
        return kept

    def _drop(self, stream: str, frame: RawFrame) -> None:
        self.dropped_total += 1
        owed = self._dropped.get(stream)
        if owed is None:
            self._dropped[stream] = _Dropped(frame.venue, 1, frame.ts_recv, frame.ts_recv)
        else:
            owed.count += 1
            owed.last_ts = frame.ts_recv

    def _writer(self) -> IO[bytes]:
        if self._out is None:
            segments = self._segments()
            number = int(segments[-1].stem) + 1 if segments else 1
            self._out_path = self.directory / f"{number:08d}{_SUFFIX}"
            self._out = open(self._out_path, "ab")
        return self._out

    def _sync(self) -> None:
        if self._out is not None:
            os.fsync(self._out.fileno())
        self._synced_at = time.monotonic()

    def roll(self) -> None:
        """Close the segment being written; the next append starts a new one."""
        if self._out is not None:
            self._sync()
            self._out.close()
            self._out = None
            self._out_path = None

    # -- reading -------------------------------------------------------------------------------
    def empty(self) -> bool:
        """Tell whether no record waits in the journal (drop markers may still be owed)."""
        return self.size == 0

    def closed_segments(self) -> list[Path]:
        """Return the segments no longer written to, oldest first."""
        return [p for p in self._segments() if p != self._out_path]

    def read(self, segment: Path, limit: int) -> Iterator[tuple[list[Item], int]]:
        """Yield unconsumed records of ``segment`` in chunks, each with its end offset.

        Pass the offset to :meth:`consumed` once the chunk is safely in Redis.
        """
        start = self._offsets.get(segment, 0)
        with open(segment, "rb") as f:
            f.seek(start)
            unpacker = msgpack.Unpacker(f, raw=False, use_list=True)
            chunk: list[Item] = []
            for record in unpacker:
                chunk.append(_unpack(record))
                if len(chunk) >= limit:
                    yield chunk, start + unpacker.tell()
                    chunk = []
            if chunk:
                yield chunk, start + unpacker.tell()

    def consumed(self, segment: Path, offset: int) -> None:
        """Record that ``segment`` up to byte ``offset`` is in Redis."""
        self._offsets[segment] = offset

    def remove(self, segment: Path) -> None:
        """Delete a fully drained segment."""
        self.size -= segment.stat().st_size
        self._offsets.pop(segment, None)
        segment.unlink()
        if not self._segments():
            self.size = 0

    def take_gaps(self, now_ns: int) -> list[Item]:
        """Return (and forget) a gap marker per stream that had frames dropped."""
        out = [(stream, _gap_frame(owed, now_ns)) for stream, owed in self._dropped.items()]
        self._dropped.clear()
        return out

    def close(self) -> None:
        """Flush, fsync and release the directory."""
        self.roll()
        self._lock.close()

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{_SUFFIX}"))


def _pack(stream: str, f: RawFrame) -> bytes:
    fields = [stream, f.kind, f.venue, f.conn, f.seq, f.ts_recv, f.data, f.channel]
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(record: Any) -> Item:
    stream, kind, venue, conn, seq, ts_recv, data, channel = record
    return stream, RawFrame(kind, venue, conn, seq, ts_recv, data, channel)


def _gap_frame(owed: _Dropped, now_ns: int | None = None) -> RawFrame:
    event = {
        "event": MarkerEvent.GAP,
        "reason": "spill journal full (disk cap); frames dropped while Redis was unreachable",
        "frames_dropped": owed.count,
        "first_ts_recv": owed.first_ts,
        "last_ts_recv": owed.last_ts,
    }
    ts = owed.last_ts if now_ns is None else now_ns
    return RawFrame(RawKind.MARKER, owed.venue, "journal", 0, ts, orjson.dumps(event).decode(), "")
