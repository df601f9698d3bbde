"""Read tickpipe's streams into pandas DataFrames for analysis and export, one time range at a time.

Every reader takes a symbol and an optional time range (``start`` inclusive, ``end`` exclusive;
each may be ``None``, integer nanoseconds, a :class:`datetime`, a :class:`pandas.Timestamp` or an
ISO string, naive values meaning UTC) and returns a DataFrame indexed by a UTC ``DatetimeIndex``
named after the time it is ordered by:

* :func:`read_trades` — index ``ts_event``; ``price``, ``qty`` (float), ``side``, ``trade_id``,
  ``ts_recv``, ``ts_proc`` (datetime).
* :func:`read_quotes` — index ``ts_event``; ``bid_price``, ``bid_qty``, ``ask_price``, ``ask_qty``.
* :func:`read_bars` — index ``ts_open``; ``open high low close volume`` (float), ``trades``,
  ``revision`` (int), ``final`` (bool): only the latest revision of each bar.
* :func:`read_book` — index ``ts_event``; the book tops: ``update_id``, ``status`` (``live`` or
  ``stale``), best ``bid_price``/``bid_qty``/``ask_price``/``ask_qty`` and ``bids``/``asks``
  (the ten best levels as written).
* :func:`read_signals` — index ``ts_event`` (the causing trade); ``signal_id``, ``strategy``,
  ``action``, ``side``, ``qty``, ``price``, ``reason``, ``ts_signal``...
* :func:`read_gaps` — index ``ts_event``; the ``gaps`` stream: gap records and their
  resolutions (``kind=resolution``; they have no event time: their write time stands in).
* :func:`read_orders` — index ``ts`` (when the trader wrote the entry); ``event``,
  ``client_order_id``, ``status``, ``side``, ``qty``, ``price``, ``filled_qty``, ``last_price``...
* :func:`read_raw` — index ``ts_recv``; raw entries as stored (``kind``, ``conn``, ``seq``,
  ``channel``, ``data``): the ``tickpipe export raw`` format that ``tickpipe replay`` reads back.
* :func:`read_tickers` — index ``ts_event``; the venue's rolling-window tickers and average
  prices (``channel``, ``window``, ``open high low last volume quote_volume weighted_avg``...).
* :func:`read_venue_bars` — index ``ts_open``; the bars the venue published (Binance klines of
  every interval, ``1d@+08:00`` for UTC+8 candles; Alpaca's bars), latest revision of each
  ``(interval, ts_open)``; ``interval`` picks one series.
* :func:`read_partial_depth` — index ``ts_event`` (the receive time: the venue sends none); the
  venue's top-of-book snapshots (``depth`` 5/10/20, ``update_ms``, ``update_id``, best
  ``bid_price``/``bid_qty``/``ask_price``/``ask_qty`` and ``bids``/``asks`` as written).
* :func:`read_balances` — index ``ts_event``; the account's ``position`` and ``update`` entries
  (``asset``, ``free``, ``locked``, ``delta``); ``symbol`` filters by asset.
* :func:`read_positions` — one row per symbol: ``position``, ``avg_cost``, ``realized_pnl``,
  ``unrealized_pnl``, ``mark_price``.

**Only the range is read.** Entry ids are the times Redis stored the entries, and an entry is
stored after the time it carries, so a reader starts its ``XRANGE`` at ``<start ms - 5 s>-0``
(:data:`SKEW_MS` allows for clocks that disagree) and reads :data:`PAGE` entries at a time. Past
``end`` it keeps reading while the entries still carry times inside the range (a late write, a
bar that closes after ``end``, a replay of old data whose ids are all recent), and stops at the
end of the first page in which the symbol's entries reach ``end``, or which was written more than
:data:`LAG_MS` after ``end`` and holds nothing in the range. Reading one minute of a stream of a
million entries fetches that minute and at most about one page more.

**From the archive, the same call.** Every ``read_*`` coroutine takes, instead of a Redis
client, an :class:`Archive` (the archive stage's directory): the rows then come from its Parquet
files, and only from those that can hold the range: the ``date=`` directories the range covers,
and in each file the row groups whose ``_ts`` statistics overlap it. The synchronous wrappers take
``source="archive"`` (``tickpipe export --from archive``). The DataFrames are the same as from
Redis, with the entries' own fields; positions (a hash, not a stream) are not archived.

Prices and quantities stay decimal strings in Redis; they become floats here and nowhere
earlier. The ``read_*`` coroutines take a redis.asyncio client; :func:`trades`, :func:`quotes`,
:func:`bars`, :func:`orders`, :func:`positions` and :func:`read` (any kind, e.g.
``read(settings, "book", "BTCUSDT", start, end)``) are synchronous wrappers that connect with
``settings.redis_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import pandas as pd
import redis.asyncio as aioredis

from tickpipe.archive.files import read_rows
from tickpipe.archive.layout import kind_of
from tickpipe.archive.shell import archive_root
from tickpipe.common.contract import OrderEvent, base_entry_id, raw_entry_frames
from tickpipe.common.names import EXPORT_KINDS, Partition
from tickpipe.common.redis_io import connect_redis
from tickpipe.common.schema import decode_fields
from tickpipe.common.settings import Settings

__all__ = [
    "KINDS",
    "LAG_MS",
    "PAGE",
    "SKEW_MS",
    "Archive",
    "bars",
    "orders",
    "positions",
    "quotes",
    "read",
    "read_balances",
    "read_bars",
    "read_book",
    "read_gaps",
    "read_kind",
    "read_orders",
    "read_partial_depth",
    "read_positions",
    "read_quotes",
    "read_raw",
    "read_signals",
    "read_tickers",
    "read_trades",
    "read_venue_bars",
    "to_ns",
    "trades",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Archive:
    """The archive stage's directory, read in place of Redis (see the module docstring).

    ``stats`` counts the ``files`` and ``row_groups`` read and those ``skipped`` by time.
    """

    root: Path
    stats: dict[str, int] = field(default_factory=dict, compare=False)


Source: TypeAlias = "aioredis.Redis | Archive"
TimeLike: TypeAlias = int | str | datetime | None  # pandas.Timestamp is a datetime
#: Entries fetched per ``XRANGE``.
PAGE = 5000
#: An entry may be stored this much before the time it carries (clocks that disagree).
SKEW_MS = 5_000
#: Past ``end``, a page written this long after it with nothing in the range ends the read.
LAG_MS = 60_000

_FLOATS = {
    "price", "qty", "bid_price", "bid_qty", "ask_price", "ask_qty", "open", "high", "low",
    "close", "volume", "filled_qty", "last_qty", "last_price", "cum_quote", "last",
    "quote_volume", "price_change", "price_change_pct", "weighted_avg", "free", "locked", "delta",
}  # fmt: skip
_INTS = {"trades", "revision", "seq", "depth", "update_ms"}
_TIMES = {
    "ts_event", "ts_recv", "ts_proc", "ts_signal", "ts_intent", "ts_open", "ts", "ts_close",
}  # fmt: skip
Row: TypeAlias = dict[str, str]


def to_ns(value: TimeLike) -> int | None:
    """Turn a time (ns, datetime, Timestamp, ISO text; naive = UTC) into integer nanoseconds."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value)


def _id_ms(row: Row) -> int:
    return int(row["_id"].partition("-")[0])


def _time(row: Row, index: str) -> int | None:
    """The row's time on ``index``; an entry without one is placed at its write time."""
    value = row.get(index)
    if not value:
        return _id_ms(row) * 1_000_000
    try:
        return int(value)
    except ValueError:
        return None


def _archived(
    archive: Archive, stream: str, start: TimeLike, end: TimeLike, symbol: str | None
) -> list[Row]:
    """The archived entries of ``stream`` (its partition or venue only) in ``[start, end)``."""
    tag = stream.partition("{")[2].partition("}")[0]  # ``binance:0`` or ``binance``
    rows = read_rows(
        archive.root, tag.partition(":")[0], kind_of(stream), symbol, to_ns(start), to_ns(end),
        stats=archive.stats,
    )  # fmt: skip
    return [r for r in rows if r.pop("_source", tag) == tag]


async def _entries(
    redis: Source, stream: str, index: str, start: TimeLike, end: TimeLike,
    symbol: str | None = None,
) -> list[Row]:  # fmt: skip
    """The entries of ``stream`` that may fall in ``[start, end)`` on ``index``, page by page.

    Each row carries its entry id as ``_id``; rows of other symbols are dropped. See the module
    docstring for where reading starts and stops.
    """
    if isinstance(redis, Archive):
        return _archived(redis, stream, start, end, symbol)
    lo, hi = to_ns(start), to_ns(end)
    first = "-" if lo is None else f"{max(lo // 1_000_000 - SKEW_MS, 0)}-0"
    hi_ms = None if hi is None else hi // 1_000_000
    out: list[Row] = []
    while True:
        page: list[Any] = list(await redis.xrange(stream, min=first, max="+", count=PAGE) or [])
        rows: list[Row] = []
        for entry_id, whole in page:  # a packed raw entry: one row per frame
            for frame_id, fields in raw_entry_frames(entry_id, whole or {}):
                row = decode_fields(fields)
                row["_id"] = frame_id
                rows.append(row)
        mine = [r for r in rows if symbol is None or r.get("symbol") == symbol]
        out += mine
        if len(page) < PAGE:
            return out
        first = "(" + base_entry_id(rows[-1]["_id"])
        if hi is None or hi_ms is None or _id_ms(rows[-1]) < hi_ms:
            continue
        times = [_time(r, index) for r in mine]
        reached = any(t is not None and t >= hi for r, t in zip(mine, times, strict=True)
                      if _id_ms(r) >= hi_ms)  # fmt: skip
        inside = any(t is not None and t < hi and (lo is None or t >= lo) for t in times)
        if reached or (_id_ms(rows[-1]) >= hi_ms + LAG_MS and not inside):
            return out


def _frame(rows: list[Row], index: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
    """Type the columns, filter ``[start, end)`` on ``index`` and index by it (UTC)."""
    for row in rows:
        if not row.get(index):
            row[index] = str(_id_ms(row) * 1_000_000)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name=index))
    for col in frame.columns:
        if col in _FLOATS:
            frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce")
        elif col in _INTS:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").fillna(0).astype("int64")
        elif col in _TIMES:
            frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce")
    lo, hi = to_ns(start), to_ns(end)
    keep = frame[index].notna()
    if lo is not None:
        keep &= frame[index] >= lo
    if hi is not None:
        keep &= frame[index] < hi
    frame = frame[keep].copy()
    for col in frame.columns:
        if col in _TIMES:
            frame[col] = pd.to_datetime(frame[col], unit="ns", utc=True)
    frame = frame.drop(columns=[c for c in ("v", "_id", "_source") if c in frame.columns])
    return frame.set_index(index).sort_index(kind="stable")


async def _read(
    redis: Source, streams: list[str], index: str, start: TimeLike, end: TimeLike,
    symbol: str | None,
) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    for stream in streams:
        rows += await _entries(redis, stream, index, start, end, symbol)
    return rows


def _streams(
    settings: Settings, symbol: str | None, stream: Callable[[Partition], str]
) -> list[str]:
    """The stream of ``symbol``'s partition, or of every partition when ``symbol`` is None."""
    if symbol is not None:
        return [stream(settings.partition_of(symbol))]
    return [stream(p) for p in settings.partitions()]


async def _by_event(
    redis: Source,
    settings: Settings,
    stream: Callable[[Partition], str],
    symbol: str | None,
    start: TimeLike,
    end: TimeLike,
) -> pd.DataFrame:
    """Read ``stream`` of ``symbol``'s partition (of every partition when ``symbol`` is None)
    with ``start <= ts_event < end``."""
    rows = await _read(redis, _streams(settings, symbol, stream), "ts_event", start, end, symbol)
    return _frame(rows, "ts_event", start, end)


async def read_trades(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the trades of ``symbol`` with ``start <= ts_event < end``."""
    return await _by_event(redis, settings, settings.keys.trades, symbol, start, end)


async def read_quotes(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the best bid/offer updates of ``symbol`` with ``start <= ts_event < end``."""
    return await _by_event(redis, settings, settings.keys.quotes, symbol, start, end)


async def read_book(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the book tops of ``symbol`` with ``start <= ts_event < end``."""
    return await _by_event(redis, settings, settings.keys.book, symbol, start, end)


async def read_signals(
    redis: Source, settings: Settings, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the signals (of every symbol when ``symbol`` is None) caused in ``[start, end)``."""
    return await _by_event(redis, settings, settings.keys.signals, symbol, start, end)


async def read_gaps(
    redis: Source, settings: Settings, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the gap records and resolutions (every symbol when ``symbol`` is None)."""
    return await _by_event(redis, settings, settings.keys.gaps, symbol, start, end)


async def read_tickers(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the tickers of ``symbol`` pushed in ``[start, end)``."""
    return await _by_event(redis, settings, settings.keys.tickers, symbol, start, end)


async def read_partial_depth(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the venue's top-of-book snapshots of ``symbol`` received in ``[start, end)``."""
    return await _by_event(redis, settings, settings.keys.partial_depth, symbol, start, end)


async def read_balances(
    redis: Source, settings: Settings, asset: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the balance entries (of ``asset``, or every asset) reported in ``[start, end)``."""
    rows = await _entries(redis, settings.keys.balances(settings.venue), "ts_event", start, end)
    if asset is not None:
        rows = [r for r in rows if r.get("asset") == asset]
    return _frame(rows, "ts_event", start, end)


async def read_raw(
    redis: Source, settings: Settings, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the raw entries received in ``[start, end)``: of ``symbol``'s partition (all its
    symbols, markers and REST answers included), or of every partition when ``symbol`` is None.
    """
    streams = _streams(settings, symbol, settings.keys.raw)
    rows = await _read(redis, streams, "ts_recv", start, end, None)
    return _frame(rows, "ts_recv", start, end)


async def read_bars(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None, *, interval: str = "1m",
) -> pd.DataFrame:  # fmt: skip
    """Return the bars of ``symbol`` opening in ``[start, end)``, latest revision of each."""
    stream = settings.keys.bars(settings.partition_of(symbol), interval)
    rows = await _entries(redis, stream, "ts_open", start, end, symbol)
    return _latest_bars(rows, start, end)


def _latest_bars(rows: list[Row], start: TimeLike, end: TimeLike) -> pd.DataFrame:
    """Keep the greatest ``(revision, final)`` of each ``(interval, ts_open)``; index by it."""
    latest: dict[tuple[str, str], Row] = {}
    for row in rows:
        key = (row.get("interval", ""), row["ts_open"])
        rank = (int(row.get("revision") or 0), row.get("final") == "1")
        held = latest.get(key)
        if held is None or rank >= (int(held.get("revision") or 0), held.get("final") == "1"):
            latest[key] = row
    frame = _frame(list(latest.values()), "ts_open", start, end)
    if "final" in frame.columns:
        frame["final"] = frame["final"] == "1"
    return frame


_UNIT_NS = {
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000, "M": 31 * 86_400_000_000_000,
}  # fmt: skip


def _interval_ns(interval: str | None) -> int:
    """The length of a bar interval (``5m``, ``1M``, ``1d@+08:00``); a month if unknown."""
    text = (interval or "").partition("@")[0]
    digits = len(text) - len(text.lstrip("0123456789"))
    unit = _UNIT_NS.get(text[digits:])
    if not digits or unit is None:
        return _UNIT_NS["M"]
    return int(text[:digits]) * unit


async def read_venue_bars(
    redis: Source, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None, *, interval: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the venue's own bars of ``symbol`` opening in ``[start, end)`` (of ``interval``
    only, e.g. ``1m`` or ``1d@+08:00``, when given), latest revision of each.

    Their entries are stored while the bar forms, up to its interval after it opened, so the
    read runs on event time from ``start`` to ``end`` plus the interval (plus a month, the
    longest, when no interval is given) and keeps the bars that opened in the range.
    """
    stream = settings.keys.venue_bars(settings.partition_of(symbol))
    hi = to_ns(end)
    if hi is not None:
        hi += _interval_ns(interval) + LAG_MS * 1_000_000
    rows = await _entries(redis, stream, "ts_event", to_ns(start), hi, symbol)
    if interval is not None:
        rows = [r for r in rows if r.get("interval") == interval]
    return _latest_bars(rows, start, end)


async def read_orders(
    redis: Source, settings: Settings, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the ``orders`` log (every symbol when ``symbol`` is None), indexed by ``ts``.

    The log's ``instruments`` entries (the venue's filters as the trader loaded them) are not
    orders and are left out; the trader keeps them readable in ``{V}:instruments`` too.
    """
    rows = await _entries(redis, settings.keys.orders(settings.venue), "ts", start, end, symbol)
    rows = [row for row in rows if row.get("event") != OrderEvent.INSTRUMENTS]
    for row in rows:
        if not row.get("ts"):
            row["ts"] = row.get("ts_intent") or str(_id_ms(row) * 1_000_000)
    return _frame(rows, "ts", start, end)


async def read_positions(redis: Source, settings: Settings) -> pd.DataFrame:
    """Return one row per symbol from the positions hash; missing figures are NaN."""
    if isinstance(redis, Archive):
        raise ValueError("positions are not archived (a hash, not a stream): read them from Redis")
    raw = decode_fields(await redis.hgetall(settings.keys.positions(settings.venue)))
    table: dict[str, dict[str, float]] = {}
    for name, value in raw.items():
        symbol, _, figure = name.partition(":")
        try:
            table.setdefault(symbol, {})[figure or "position"] = float(value)
        except ValueError:
            continue
    columns = ["position", "avg_cost", "realized_pnl", "unrealized_pnl", "mark_price"]
    frame = pd.DataFrame.from_dict(table, orient="index").reindex(columns=columns)
    frame.index.name = "symbol"
    return frame.sort_index().astype("float64")


#: ``tickpipe export`` kinds → reader.
KINDS = EXPORT_KINDS
#: Kinds read from every partition when no symbol is given.
_ANY_SYMBOL = {
    "signals": read_signals, "gaps": read_gaps, "raw": read_raw, "orders": read_orders,
    "balances": read_balances,
}  # fmt: skip
_ONE_SYMBOL = {
    "trades": read_trades, "quotes": read_quotes, "book": read_book, "tickers": read_tickers,
    "venue-bars": read_venue_bars, "partial-depth": read_partial_depth,
}  # fmt: skip


async def read_kind(
    redis: Source, settings: Settings, kind: str, symbol: str | None,
    start: TimeLike = None, end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Dispatch on one of :data:`KINDS`."""
    if kind == "positions":
        return await read_positions(redis, settings)
    if kind in _ANY_SYMBOL:
        return await _ANY_SYMBOL[kind](redis, settings, symbol, start, end)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    if symbol is None:
        raise ValueError(f"{kind} needs a symbol")
    if kind in _ONE_SYMBOL:
        return await _ONE_SYMBOL[kind](redis, settings, symbol, start, end)
    return await read_bars(redis, settings, symbol, start, end, interval=kind[4:])


def _sync(settings: Settings, read: Callable[[Source], Awaitable[T]], source: str = "redis") -> T:
    if source == "archive":

        async def archived() -> T:
            return await read(Archive(archive_root(settings)))

        return asyncio.run(archived())
    if source != "redis":
        raise ValueError(f"source must be 'redis' or 'archive', got {source!r}")

    async def go() -> T:
        redis = connect_redis(settings.redis_url)
        try:
            return await read(redis)
        finally:
            await redis.aclose()

    return asyncio.run(go())


def trades(
    settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None,
    *, source: str = "redis",
) -> Any:  # fmt: skip
    """Return :func:`read_trades` synchronously (not from inside a running event loop)."""
    return _sync(settings, lambda r: read_trades(r, settings, symbol, start, end), source)


def quotes(
    settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None,
    *, source: str = "redis",
) -> Any:  # fmt: skip
    """Return :func:`read_quotes` synchronously."""
    return _sync(settings, lambda r: read_quotes(r, settings, symbol, start, end), source)


def bars(
    settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None,
    *, interval: str = "1m", source: str = "redis",
) -> Any:  # fmt: skip
    """Return :func:`read_bars` synchronously."""
    return _sync(
        settings, lambda r: read_bars(r, settings, symbol, start, end, interval=interval), source
    )


def orders(
    settings: Settings, symbol: str | None = None, start: TimeLike = None, end: TimeLike = None,
    *, source: str = "redis",
) -> Any:  # fmt: skip
    """Return :func:`read_orders` synchronously."""
    return _sync(settings, lambda r: read_orders(r, settings, symbol, start, end), source)


def read(
    settings: Settings, kind: str, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None, *, source: str = "redis",
) -> Any:  # fmt: skip
    """Return :func:`read_kind` synchronously: any of :data:`KINDS` (``book``, ``raw``...);
    ``source="archive"`` reads the archive's files instead of Redis."""
    return _sync(settings, lambda r: read_kind(r, settings, kind, symbol, start, end), source)


def positions(settings: Settings) -> Any:
    """Return :func:`read_positions` synchronously."""
    return _sync(settings, lambda r: read_positions(r, settings))
