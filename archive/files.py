"""Write segments as Parquet files durably, undo a segment a crash left half-done, read ranges.

**Writing a segment** (:func:`write_segment`) is the first of the archive's three steps (write,
record the watermark, acknowledge; see :mod:`archive.shell`). Before any file, an *intent* names
the segment's stream, its last entry id and every file it will write
(``<root>/_intents/<stream>.json``, written to a temporary name, synced and renamed). Each file is
written under a temporary name, synced, and renamed into place; the directory is synced.

**After a crash** (:func:`recover`) an intent left behind says a segment may be half-done: if the
stream's recorded watermark reached the intent's last id, the segment was recorded and the intent
is only removed; otherwise every file it names is deleted (the entries are still pending in the
archive's consumer group and will be written again). Temporary files are deleted too. So every
entry ends up in exactly one file, whatever step the process died at.

**Reading** (:func:`read_rows`) walks the ``venue/kind/symbol/date`` directories that can hold the
range, skips files named by an intent (a segment not yet recorded), and reads only the row groups
whose ``_ts`` statistics overlap the range.

Needs the ``parquet`` extra (pyarrow); it is imported when a file is written or read.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tickpipe.archive.layout import Placed, Segment, path_symbol
from tickpipe.common.contract import entry_key
from tickpipe.common.extras import need

__all__ = [
    "INTENTS",
    "ROW_GROUP",
    "TMP_SUFFIX",
    "finish_segment",
    "intent_files",
    "intent_streams",
    "load_parquet",
    "read_rows",
    "recover",
    "undo_segment",
    "write_segment",
]

log = logging.getLogger("tickpipe.archive")

#: Directory (under the root) of the intents of segments being written.
INTENTS = "_intents"
#: Suffix of a file being written; never read, deleted on recovery.
TMP_SUFFIX = ".tmp"
#: Rows per Parquet row group: the granularity at which readers skip by time.
ROW_GROUP = 8192


def load_parquet() -> None:
    """Import pyarrow now (a second or more): a missing extra is a config error at start.

    Building a first table also imports what pyarrow loads lazily (pandas), so the first roll
    does not pay for it.
    """
    pa, _ = _pyarrow()
    pa.table({"_ts": pa.array([0], pa.int64())}).to_pylist()


def _pyarrow() -> tuple[Any, Any]:
    need("parquet", "the archive (TICKPIPE_ARCHIVE)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, write: Any) -> None:
    """Write ``path`` through a synced temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    write(tmp)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


def _intent_path(root: Path, stream: str) -> Path:
    return root / INTENTS / (stream.replace("/", "_") + ".json")


def _table(place: Placed, source: str) -> Any:
    pa, _ = _pyarrow()
    names: dict[str, None] = {}
    for row in place.rows:
        names.update(dict.fromkeys(row))
    columns: dict[str, Any] = {
        "_id": pa.array(place.ids, pa.string()),
        "_source": pa.array([source] * len(place.ids), pa.string()),
        "_ts": pa.array(place.times, pa.int64()),
    }
    for name in names:
        if name in columns:
            continue
        columns[name] = pa.array([row.get(name) for row in place.rows], pa.string())
    return pa.table(columns)


def write_segment(root: Path, segment: Segment) -> list[str]:
    """Write the segment's intent, then each of its files; return the files' relative paths."""
    _, pq = _pyarrow()
    files = segment.files()
    intent = {"stream": segment.stream, "last": segment.last_id, "files": sorted(files)}
    _write_atomic(_intent_path(root, segment.stream), lambda p: p.write_bytes(orjson.dumps(intent)))
    for relative, place in files.items():
        table = _table(place, segment.source)
        _write_atomic(
            root / relative,
            lambda p, t=table: pq.write_table(t, p, row_group_size=ROW_GROUP, compression="zstd"),
        )
    return sorted(files)


def finish_segment(root: Path, stream: str) -> None:
    """Remove the segment's intent once its watermark is recorded (and its entries acked)."""
    _intent_path(root, stream).unlink(missing_ok=True)


def _intents(root: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    folder = root / INTENTS
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            yield path, orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("unreadable archive intent %s removed: %s", path, exc)
            path.unlink(missing_ok=True)


def intent_files(root: Path) -> set[str]:
    """The files (relative paths) of segments whose watermark is not known to be recorded."""
    return {name for _, intent in _intents(root) for name in intent.get("files", ())}


def recover(root: Path, watermarks: dict[str, str | None]) -> int:
    """Settle what a crash left behind; return how many unrecorded files were deleted.

    ``watermarks`` maps each stream with an intent to its recorded watermark (``None``: none).
    """
    removed = 0
    for tmp in root.rglob("*" + TMP_SUFFIX) if root.is_dir() else ():
        tmp.unlink(missing_ok=True)
    for path, intent in _intents(root):
        mark = watermarks.get(intent["stream"])
        recorded = mark is not None and entry_key(mark) >= entry_key(intent["last"])
        if not recorded:
            removed += _remove(root, intent)
            log.warning(
                "archive segment of %s up to %s was not recorded: its %d file(s) removed, "
                "the entries will be written again",
                intent["stream"],
                intent["last"],
                len(intent.get("files", ())),
            )
        path.unlink(missing_ok=True)
    return removed


def _remove(root: Path, intent: dict[str, Any]) -> int:
    removed = 0
    for name in intent.get("files", ()):
        target = root / name
        for path in (target, target.with_name(target.name + TMP_SUFFIX)):
            if path.exists():
                path.unlink()
                removed += path == target
    return removed


def undo_segment(root: Path, stream: str) -> int:
    """Delete the files of ``stream``'s unrecorded segment and its intent (a failed write)."""
    path = _intent_path(root, stream)
    try:
        intent = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return 0
    removed = _remove(root, intent)
    path.unlink(missing_ok=True)
    return removed


def intent_streams(root: Path) -> list[str]:
    """The streams that have an intent on disk."""
    return [intent["stream"] for _, intent in _intents(root)]


def _days(lo: int | None, hi: int | None) -> tuple[str | None, str | None]:
    def day(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC).date().isoformat()

    return (None if lo is None else day(lo)), (None if hi is None else day(max(hi - 1, 0)))


def _files(
    root: Path, venue: str, kind: str, symbol: str | None, lo: int | None, hi: int | None
) -> list[Path]:
    base = root / f"venue={venue}" / f"kind={kind}"
    if not base.is_dir():
        return []
    folders = [base / f"symbol={path_symbol(symbol)}"] if symbol else sorted(base.iterdir())
    first, last = _days(lo, hi)
    out: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for day in sorted(folder.iterdir()):
            name = day.name.removeprefix("date=")
            if (first is not None and name < first) or (last is not None and name > last):
                continue
            out += sorted(day.glob("*.parquet"))
    return out


def read_rows(
    root: Path,
    venue: str,
    kind: str,
    symbol: str | None,
    lo: int | None,
    hi: int | None,
    *,
    stats: dict[str, int] | None = None,
) -> list[dict[str, str]]:
    """Return the archived entries of ``venue``/``kind`` (of ``symbol``) with ``lo <= ts < hi``.

    Each row holds the entry's fields as text and its ``_id`` and ``_source``. Only the files
    of the days the range covers are opened and only row groups whose ``_ts`` statistics overlap
    it are read; ``stats`` (if given) counts ``files`` and ``row_groups`` read and ``skipped``.
    """
    _, pq = _pyarrow()
    pending = intent_files(root)
    counts = stats if stats is not None else {}
    for name in ("files", "row_groups", "skipped"):
        counts.setdefault(name, 0)
    out: list[dict[str, str]] = []
    for path in _files(root, venue, kind, symbol, lo, hi):
        if str(path.relative_to(root)) in pending:
            continue
        parquet = pq.ParquetFile(path)
        column = parquet.schema_arrow.get_field_index("_ts")
        wanted = []
        for n in range(parquet.num_row_groups):
            stat = parquet.metadata.row_group(n).column(column).statistics
            if (
                stat is not None
                and stat.has_min_max
                and ((hi is not None and stat.min >= hi) or (lo is not None and stat.max < lo))
            ):
                counts["skipped"] += 1
                continue
            wanted.append(n)
        if not wanted:
            continue
        counts["files"] += 1
        counts["row_groups"] += len(wanted)
        for row in parquet.read_row_groups(wanted).to_pylist():
            ts = row.pop("_ts")
            if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
                continue
            out.append({k: v for k, v in row.items() if v is not None})
    out.sort(key=lambda r: (r["_source"], entry_key(r["_id"])))
    return out
