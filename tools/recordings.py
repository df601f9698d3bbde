"""Read recorded sessions for ``tickpipe replay``: every frame the capture holds, in order.

Three formats are recognised from the file's content, not its name:

* **hftbacktest** (``shared/realdata/hftbacktest``): gzip or text, one ``<receive time> <frame>``
  line per WebSocket frame; times of fewer than 17 digits are microseconds. A line whose body is a
  bare REST depth answer (``{"lastUpdateId":..}``, no ``stream``) is the recorder's snapshot: it
  becomes a ``depth_snapshot`` of the symbol of the file's frames.
* **cryptofeed** raw data collection: ``<exchange>.ws.<n>.<m>`` files of ``<time>: <frame>``
  lines after a ``<url> <-> <time>`` connect line, and ``<exchange>.http.<n>.<m>`` files of
  ``<url> -> <time>: <body>`` REST answers (times are float seconds). A depth answer becomes a
  ``depth_snapshot`` of the URL's ``symbol``; other REST answers are counted and left out.
* **tickpipe** ``export raw`` files (Parquet or CSV): every raw entry as it was stored (``ws``,
  ``rest`` and ``marker``), with its kind, channel, data and receive time.
* **the archive**: a directory holding ``venue=<venue>/kind=raw`` (``TICKPIPE_ARCHIVE_DIR``):
  every archived raw entry of every partition, each partition in its stream order, merged by
  receive time.

Several files (or directories of them) are merged by receive time; frames with the same time
keep the order of the files given. Each reader yields :class:`Recorded` tuples.
"""

from __future__ import annotations

import gzip
import heapq
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = [
    "REST_BODY",
    "Recorded",
    "RecordingStats",
    "detect_format",
    "is_archive",
    "read_recording",
    "read_recordings",
    "symbol_of",
]

#: :attr:`Recorded.kind` of a venue's bare REST depth answer, wrapped by the writer.
REST_BODY = "rest-body"

_HFT = re.compile(rb"^\d{13,19} ")
_CF_WS = re.compile(rb"^(\d+(\.\d+)?: |\S+ <-> \d+(\.\d+)?$)")
_CF_HTTP = re.compile(rb"^\S+ -> \d+(\.\d+)?: ")


class Recorded(NamedTuple):
    """One recorded frame: receive time (ns), text, raw ``kind``, ``channel``, ``symbol``.

    ``kind`` is a raw entry kind (``ws``, ``rest``, ``marker``) or :data:`REST_BODY`; ``symbol``
    is the symbol the frame belongs to when known (it routes the frame to its partition).
    """

    ts_recv: int
    data: str
    kind: str = "ws"
    channel: str = ""
    symbol: str | None = None


class RecordingStats:
    """What the readers passed over (REST answers that are not depth snapshots, unreadable
    lines) and how far they are through their files (:meth:`fraction`)."""

    def __init__(self) -> None:
        self.skipped_rest = 0
        self.skipped_lines = 0
        self._files: list[tuple[IO[bytes], int]] = []  # each file as stored, and its size

    def track(self, raw: IO[bytes], size: int) -> None:
        self._files.append((raw, size))

    def fraction(self) -> float | None:
        """Share of the bytes of the files opened so far that has been read (None: no file)."""
        total = done = 0
        for raw, size in self._files:
            total += size
            done += size if raw.closed else min(raw.tell(), size)
        return done / total if total else None


def symbol_of(kind: str, data: str) -> str | None:
    """The symbol a frame belongs to, or ``None`` (replies, markers of no symbol, bare REST)."""
    if kind == "ws" and data.startswith('{"stream":"'):
        at = data.find("@", 11)
        if at > 11:
            return data[11:at].upper()
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if kind != "ws":
        symbol = obj.get("symbol")
        return symbol.upper() if isinstance(symbol, str) and symbol else None
    stream = obj.get("stream")
    if isinstance(stream, str) and "@" in stream:
        return stream.partition("@")[0].upper()
    inner = obj.get("data", obj)
    symbol = inner.get("s") if isinstance(inner, dict) else None
    return symbol.upper() if isinstance(symbol, str) and symbol else None


def _open(path: Path, stats: RecordingStats | None = None) -> IO[bytes]:
    raw = open(path, "rb")  # closed by the reader that wraps it
    magic = raw.read(2)
    raw.seek(0)
    if stats is not None:
        stats.track(raw, path.stat().st_size)
    if magic == b"\x1f\x8b":
        return cast(IO[bytes], _Gzip(raw))
    return raw


class _Gzip(gzip.GzipFile):
    """A gzip reader that closes the file it reads (whose position measures progress)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def detect_format(path: Path) -> str | None:
    """``hftbacktest``, ``cryptofeed-ws``, ``cryptofeed-http``, ``parquet``, ``csv`` or None."""
    with open(path, "rb") as probe:
        if probe.read(4) == b"PAR1":
            return "parquet"
    try:
        with _open(path) as lines:
            first = b""
            for line in lines:
                if line.strip():
                    first = line.rstrip(b"\r\n")
                    break
    except (OSError, EOFError):
        return None
    if _HFT.match(first):
        return "hftbacktest"
    if _CF_HTTP.match(first):
        return "cryptofeed-http"
    if _CF_WS.match(first):
        return "cryptofeed-ws"
    header = first.split(b",")
    if b"data" in header and b"kind" in header and b"ts_recv" in header:
        return "csv"
    return None


def _seconds_to_ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def _with_file_symbol(records: Iterable[Recorded]) -> Iterator[Recorded]:
    """Give symbol-less records the symbol of the file's frames around them (order kept).

    A record before any frame with a symbol waits for the first one; the recorders write one
    symbol per file, so that is the symbol its snapshot belongs to.
    """
    held: list[Recorded] = []
    current: str | None = None
    for rec in records:
        if rec.symbol is None and rec.kind == REST_BODY:
            if current is None:
                held.append(rec)
                continue
            rec = rec._replace(symbol=current)
        elif rec.symbol is not None:
            current = rec.symbol
            if held:
                yield from (h._replace(symbol=current) for h in held)
                held.clear()
        yield rec
    yield from held


def _hftbacktest(path: Path, stats: RecordingStats) -> Iterator[Recorded]:
    with _open(path, stats) as lines:
        for line in lines:
            stamp, _, body = line.rstrip(b"\r\n").partition(b" ")
            if not stamp.isdigit() or not body:
                stats.skipped_lines += 1
                continue
            ts = int(stamp)
            ts = ts * 1000 if ts < 10**17 else ts
            frame = body.decode()
            if frame.startswith('{"lastUpdateId"'):
                yield Recorded(ts, frame, REST_BODY, "depth_snapshot", None)
            else:
                yield Recorded(ts, frame, "ws", "", symbol_of("ws", frame))


def _cryptofeed_ws(path: Path, stats: RecordingStats) -> Iterator[Recorded]:
    with _open(path, stats) as lines:
        for line in lines:
            text = line.rstrip(b"\r\n").decode()
            stamp, sep, frame = text.partition(": ")
            if not sep or not frame:
                stats.skipped_lines += " <-> " not in text  # the connect line is not a frame
                continue
            yield Recorded(_seconds_to_ns(stamp), frame, "ws", "", symbol_of("ws", frame))


def _cryptofeed_http(path: Path, stats: RecordingStats) -> Iterator[Recorded]:
    with _open(path, stats) as lines:
        for line in lines:
            text = line.rstrip(b"\r\n").decode()
            url, sep, rest = text.partition(" -> ")
            stamp, sep2, body = rest.partition(": ")
            if not (sep and sep2 and body):
                stats.skipped_lines += bool(text.strip())
                continue
            parts = urlsplit(url)
            symbol = (parse_qs(parts.query).get("symbol") or [""])[0].upper() or None
            if not parts.path.endswith("/depth") or not body.startswith("{"):
                stats.skipped_rest += 1
                continue
            yield Recorded(_seconds_to_ns(stamp), body, REST_BODY, "depth_snapshot", symbol)


def _export(path: Path, fmt: str) -> Iterator[Recorded]:
    import pandas as pd  # only exports need it

    frame = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype=str)
    if "ts_recv" in frame.columns:
        frame = frame.set_index("ts_recv")
    missing = {"kind", "data"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a tickpipe raw export (no {', '.join(sorted(missing))})")
    times = pd.to_datetime(frame.index, utc=True).asi8
    channels = frame["channel"].fillna("") if "channel" in frame.columns else [""] * len(frame)
    for ts, kind, channel, data in zip(times, frame["kind"], channels, frame["data"], strict=True):
        kind, data = str(kind), str(data)
        yield Recorded(int(ts), data, kind, str(channel), symbol_of(kind, data))


def read_recording(path: Path, stats: RecordingStats | None = None) -> Iterator[Recorded]:
    """Yield the frames of one recording file, whatever its format, in file order."""
    stats = stats or RecordingStats()
    fmt = detect_format(path)
    if fmt == "hftbacktest":
        return _with_file_symbol(_hftbacktest(path, stats))
    if fmt == "cryptofeed-ws":
        return _cryptofeed_ws(path, stats)
    if fmt == "cryptofeed-http":
        return _cryptofeed_http(path, stats)
    if fmt in ("parquet", "csv"):
        return _export(path, fmt)
    raise ValueError(
        f"{path}: not a recording tickpipe reads (hftbacktest `<ns> <frame>` lines, cryptofeed "
        "`.ws.`/`.http.` files, or a `tickpipe export raw` Parquet/CSV file)"
    )


def is_archive(path: Path) -> bool:
    """Tell whether ``path`` is an archive directory (it holds ``venue=*/kind=raw``)."""
    return path.is_dir() and any(path.glob("venue=*/kind=raw"))


def _archive(root: Path) -> Iterator[Recorded]:
    """Every archived raw entry under ``root``, by receive time (stream order among equals)."""
    from tickpipe.archive.files import read_rows  # pyarrow: only archives need it

    sources = []
    for folder in sorted(root.glob("venue=*")):
        rows = read_rows(root, folder.name.removeprefix("venue="), "raw", None, None, None)
        rows.sort(key=lambda r: int(r.get("ts_recv") or 0))  # stable: stream order kept
        sources.append(
            Recorded(int(r.get("ts_recv") or 0), r.get("data", ""), r.get("kind", "ws"),
                     r.get("channel", ""), symbol_of(r.get("kind", "ws"), r.get("data", "")))
            for r in rows
        )  # fmt: skip
    return heapq.merge(*sources, key=lambda r: r.ts_recv)


def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if is_archive(path):
            continue
        if path.is_dir():
            files += [p for p in sorted(path.iterdir()) if p.is_file() and detect_format(p)]
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    if not files and not any(is_archive(p) for p in paths):
        raise ValueError("no recording found in " + ", ".join(str(p) for p in paths))
    return files


def read_recordings(
    paths: Iterable[Path], stats: RecordingStats | None = None
) -> Iterator[Recorded]:
    """Merge the frames of several recordings (files or directories) by receive time."""
    stats = stats or RecordingStats()
    paths = list(paths)
    sources = [_archive(p) for p in paths if is_archive(p)]
    sources += [read_recording(p, stats) for p in _expand(paths)]
    if len(sources) == 1:
        return sources[0]
    return heapq.merge(*sources, key=lambda r: r.ts_recv)
