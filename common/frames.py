"""Read tickpipe's streams into pandas DataFrames for analysis and export.

Every reader takes a symbol and an optional time range (``start`` inclusive, ``end`` exclusive;
each may be ``None``, integer nanoseconds, a :class:`datetime`, a :class:`pandas.Timestamp` or an
ISO string, naive values meaning UTC) and returns a DataFrame indexed by a UTC ``DatetimeIndex``
named after the time it is ordered by:

* :func:`read_trades` — index ``ts_event``; ``price``, ``qty`` (float), ``side``, ``trade_id``,
  ``ts_recv``, ``ts_proc`` (datetime).
* :func:`read_quotes` — index ``ts_event``; ``bid_price``, ``bid_qty``, ``ask_price``, ``ask_qty``.
* :func:`read_bars` — index ``ts_open``; ``open high low close volume`` (float), ``trades``,
  ``revision`` (int), ``final`` (bool): only the latest revision of each bar.
* :func:`read_orders` — index ``ts`` (when the trader wrote the entry); ``event``,
  ``client_order_id``, ``status``, ``side``, ``qty``, ``price``, ``filled_qty``, ``last_price``...
* :func:`read_positions` — one row per symbol: ``position``, ``avg_cost``, ``realized_pnl``,
  ``unrealized_pnl``, ``mark_price``.

Prices and quantities stay decimal strings in Redis; they become floats here and nowhere
earlier. The ``read_*`` coroutines take a redis.asyncio client; :func:`trades`, :func:`quotes`,
:func:`bars`, :func:`orders` and :func:`positions` are synchronous wrappers that connect with
``settings.redis_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import pandas as pd
import redis.asyncio as aioredis

from common.names import Partition, shard_for
from common.redis_io import connect_redis
from common.schema import decode_fields
from common.settings import Settings

__all__ = [
    "KINDS",
    "bars",
    "orders",
    "positions",
    "quotes",
    "read_bars",
    "read_kind",
    "read_orders",
    "read_positions",
    "read_quotes",
    "read_trades",
    "to_ns",
    "trades",
]

T = TypeVar("T")
TimeLike: TypeAlias = int | str | datetime | None  # pandas.Timestamp is a datetime
PAGE = 5000

_FLOATS = {
    "price", "qty", "bid_price", "bid_qty", "ask_price", "ask_qty", "open", "high", "low",
    "close", "volume", "filled_qty", "last_qty", "last_price", "cum_quote",
}  # fmt: skip
_INTS = {"trades", "revision"}
_TIMES = {"ts_event", "ts_recv", "ts_proc", "ts_signal", "ts_intent", "ts_open", "ts"}


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


def _partition(settings: Settings, symbol: str) -> Partition:
    return Partition(settings.venue, shard_for(symbol, settings.shards))


async def _entries(redis: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    """Every entry of ``stream`` in order, read page by page, with its id as ``_id``."""
    out: list[dict[str, str]] = []
    start = "-"
    while True:
        page: list[Any] = list(await redis.xrange(stream, min=start, max="+", count=PAGE) or [])
        for entry_id, fields in page:
            row = decode_fields(fields or {})
            row["_id"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append(row)
        if len(page) < PAGE:
            return out
        start = "(" + out[-1]["_id"]


def _frame(rows: list[dict[str, str]], index: str, start: TimeLike, end: TimeLike) -> pd.DataFrame:
    """Type the columns, filter ``[start, end)`` on ``index`` and index by it (UTC)."""
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
    frame = frame.drop(columns=[c for c in ("v", "_id") if c in frame.columns])
    return frame.set_index(index).sort_index(kind="stable")


async def read_trades(
    redis: aioredis.Redis, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the trades of ``symbol`` with ``start <= ts_event < end``."""
    rows = await _entries(redis, settings.keys.trades(_partition(settings, symbol)))
    return _frame([r for r in rows if r.get("symbol") == symbol], "ts_event", start, end)


async def read_quotes(
    redis: aioredis.Redis, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the best bid/offer updates of ``symbol`` with ``start <= ts_event < end``."""
    rows = await _entries(redis, settings.keys.quotes(_partition(settings, symbol)))
    return _frame([r for r in rows if r.get("symbol") == symbol], "ts_event", start, end)


async def read_bars(
    redis: aioredis.Redis, settings: Settings, symbol: str, start: TimeLike = None,
    end: TimeLike = None, *, interval: str = "1m",
) -> pd.DataFrame:  # fmt: skip
    """Return the bars of ``symbol`` opening in ``[start, end)``, latest revision of each."""
    rows = await _entries(redis, settings.keys.bars(_partition(settings, symbol), interval))
    latest: dict[str, dict[str, str]] = {}
    for row in rows:
        if row.get("symbol") != symbol:
            continue
        rank = (int(row.get("revision") or 0), row.get("final") == "1")
        held = latest.get(row["ts_open"])
        if held is None or rank >= (int(held.get("revision") or 0), held.get("final") == "1"):
            latest[row["ts_open"]] = row
    frame = _frame(list(latest.values()), "ts_open", start, end)
    if "final" in frame.columns:
        frame["final"] = frame["final"] == "1"
    return frame


async def read_orders(
    redis: aioredis.Redis, settings: Settings, symbol: str | None = None, start: TimeLike = None,
    end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Return the ``orders`` log (every symbol when ``symbol`` is None), indexed by ``ts``."""
    rows = await _entries(redis, settings.keys.orders(settings.venue))
    for row in rows:
        if not row.get("ts"):
            row["ts"] = row.get("ts_intent") or str(int(row["_id"].split("-")[0]) * 1_000_000)
    chosen = [r for r in rows if symbol is None or r.get("symbol") == symbol]
    return _frame(chosen, "ts", start, end)


async def read_positions(redis: aioredis.Redis, settings: Settings) -> pd.DataFrame:
    """Return one row per symbol from the positions hash; missing figures are NaN."""
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
KINDS = ("trades", "quotes", "bars1s", "bars1m", "orders", "positions")


async def read_kind(
    redis: aioredis.Redis, settings: Settings, kind: str, symbol: str | None,
    start: TimeLike = None, end: TimeLike = None,
) -> pd.DataFrame:  # fmt: skip
    """Dispatch on one of :data:`KINDS`."""
    if kind == "positions":
        return await read_positions(redis, settings)
    if kind == "orders":
        return await read_orders(redis, settings, symbol, start, end)
    if symbol is None:
        raise ValueError(f"{kind} needs a symbol")
    if kind == "trades":
        return await read_trades(redis, settings, symbol, start, end)
    if kind == "quotes":
        return await read_quotes(redis, settings, symbol, start, end)
    if kind in ("bars1s", "bars1m"):
        return await read_bars(redis, settings, symbol, start, end, interval=kind[4:])
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def _sync(settings: Settings, read: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def go() -> T:
        redis = connect_redis(settings.redis_url)
        try:
            return await read(redis)
        finally:
            await redis.aclose()

    return asyncio.run(go())


def trades(settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None) -> Any:
    """Return :func:`read_trades` synchronously (not from inside a running event loop)."""
    return _sync(settings, lambda r: read_trades(r, settings, symbol, start, end))


def quotes(settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None) -> Any:
    """Return :func:`read_quotes` synchronously."""
    return _sync(settings, lambda r: read_quotes(r, settings, symbol, start, end))


def bars(
    settings: Settings, symbol: str, start: TimeLike = None, end: TimeLike = None,
    *, interval: str = "1m",
) -> Any:  # fmt: skip
    """Return :func:`read_bars` synchronously."""
    return _sync(settings, lambda r: read_bars(r, settings, symbol, start, end, interval=interval))


def orders(
    settings: Settings, symbol: str | None = None, start: TimeLike = None, end: TimeLike = None
) -> Any:
    """Return :func:`read_orders` synchronously."""
    return _sync(settings, lambda r: read_orders(r, settings, symbol, start, end))


def positions(settings: Settings) -> Any:
    """Return :func:`read_positions` synchronously."""
    return _sync(settings, lambda r: read_positions(r, settings))
