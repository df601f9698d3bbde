"""Read what the dashboard shows from Redis, in bounded windows and incrementally (read-only).

Every function here issues only reads (XRANGE, XREVRANGE, HGETALL, GET, SCAN, XINFO, XLEN) and
returns plain Python values; :mod:`dashboard.views` turns them into figures and tables.
Incremental reads take the last stream id the caller has seen and return only newer entries.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tickpipe.common.contract import OrderEvent
from tickpipe.common.health import read_health
from tickpipe.common.schema import decode_fields, text_of
from tickpipe.common.settings import Settings
from tickpipe.common.status import read_streams

__all__ = [
    "MAX_BARS",
    "MAX_MARKS",
    "BarUpdate",
    "ChartUpdate",
    "Entries",
    "fold_bars",
    "latency_summary",
    "read_book",
    "read_chart",
    "read_health_view",
    "read_latency",
    "read_orders",
    "read_positions",
]

#: Candles a chart keeps; older ones scroll out.
MAX_BARS = 300
#: Trade and order markers a chart keeps.
MAX_MARKS = 400
#: Entries read at most per stream per refresh.
READ_LIMIT = 2000

Entries = list[tuple[str, dict[str, str]]]

_ORDER_FIELDS = {
    "symbol", "side", "qty", "price", "status", "filled_qty", "reason", "order_type", "cum_quote",
}  # fmt: skip

#: What the orders table shows for an order whose last event is one of these.
_ORDER_STATES: dict[str, str] = {
    OrderEvent.INTENT: "SENT",
    OrderEvent.ACK: "ACKED",
    OrderEvent.REJECTED: "REJECTED",
}


def symbol_choices(settings: Settings) -> list[tuple[str, str]]:
    """The symbols to pick from as (label, value): ``venue:SYMBOL`` values, every venue's."""
    venues = settings.all_venues()
    return [
        (f"{v} · {s}" if len(venues) > 1 else s, f"{v}:{s}")
        for v in venues
        for s in settings.for_venue(v).symbols
    ]


def settings_of(settings: Settings, choice: str) -> tuple[Settings, str]:
    """The settings of a chosen ``venue:SYMBOL`` (a bare symbol: the primary venue's) and it."""
    name, _, symbol = choice.rpartition(":")
    name = name if name in settings.all_venues() else settings.venue
    return settings.for_venue(name), symbol


async def read_trading(
    redis: aioredis.Redis, settings: Settings
) -> tuple[list[dict[str, str]], dict[str, dict[str, str]]]:
    """Every venue's latest orders (newest first) and positions; symbols name their venue
    (``binance:BTCUSDT``) when several venues run."""
    venues = settings.all_venues()
    orders: list[dict[str, str]] = []
    positions: dict[str, dict[str, str]] = {}
    for name in venues:
        one = settings.for_venue(name)
        tag = f"{name}:" if len(venues) > 1 else ""
        orders += [
            {**o, "symbol": tag + o.get("symbol", "")} for o in await read_orders(redis, one)
        ]
        positions.update({tag + s: p for s, p in (await read_positions(redis, one)).items()})

    def newest(row: dict[str, str]) -> tuple[int, ...]:
        return tuple(int(x) for x in row["first_id"].split("-"))

    orders.sort(key=newest, reverse=True)
    return orders[:30], positions


async def _after(redis: aioredis.Redis, stream: str, last_id: str | None, window: int) -> Entries:
    """Entries newer than ``last_id``; without one, the newest ``window`` entries in order."""
    if last_id is None:
        page: list[Any] = list(await redis.xrevrange(stream, count=window) or [])
        page.reverse()
    else:
        page = list(await redis.xrange(stream, min=f"({last_id}", max="+", count=READ_LIMIT) or [])
    return [(text_of(i), decode_fields(f or {})) for i, f in page]


@dataclass
class BarUpdate:
    ts_open: int
    open: float
    high: float
    low: float
    close: float


def fold_bars(entries: Entries, symbol: str) -> dict[int, BarUpdate]:
    """Keep the latest revision of each bar of ``symbol`` (by ``(revision, final)``)."""
    best: dict[int, tuple[tuple[int, bool], BarUpdate]] = {}
    for _, f in entries:
        if f.get("symbol") != symbol:
            continue
        try:
            ts = int(f["ts_open"])
            rank = (int(f.get("revision") or 0), f.get("final") == "1")
            bar = BarUpdate(ts, float(f["open"]), float(f["high"]), float(f["low"]),
                            float(f["close"]))  # fmt: skip
        except (KeyError, ValueError):
            continue
        held = best.get(ts)
        if held is None or rank >= held[0]:
            best[ts] = (rank, bar)
    return {ts: bar for ts, (_, bar) in sorted(best.items())}


@dataclass
class ChartUpdate:
    """New chart material since the given stream ids, and the ids to ask from next time."""

    bars: dict[int, BarUpdate] = field(default_factory=dict)
    trades: list[tuple[int, float, str]] = field(default_factory=list)
    fills: list[tuple[int, float, str]] = field(default_factory=list)
    intents: list[tuple[int, str]] = field(default_factory=list)
    ids: dict[str, str | None] = field(default_factory=dict)


async def read_chart(
    redis: aioredis.Redis, settings: Settings, symbol: str, interval: str,
    ids: dict[str, str | None] | None = None,
) -> ChartUpdate:  # fmt: skip
    """Read bars, trades and the trader's orders of ``symbol`` newer than ``ids``."""
    ids = dict(ids or {})
    part = settings.partition_of(symbol)
    keys = settings.keys
    out = ChartUpdate(ids=ids)
    bars = await _after(redis, keys.bars(part, interval), ids.get("bars"), MAX_BARS * 6)
    out.bars = fold_bars(bars, symbol)
    trades = await _after(redis, keys.trades(part), ids.get("trades"), MAX_MARKS)
    for _, f in trades:
        if f.get("symbol") == symbol:
            try:
                out.trades.append((int(f["ts_event"]), float(f["price"]), f.get("side", "")))
            except (KeyError, ValueError):
                continue
    orders = await _after(redis, keys.orders(settings.venue), ids.get("orders"), READ_LIMIT)
    for _, f in orders:
        if f.get("symbol") != symbol:
            continue
        event = f.get("event")
        if event == OrderEvent.INTENT:
            stamp = f.get("ts_intent") or f.get("ts") or "0"
            out.intents.append((int(stamp), f.get("side", "")))
        elif event == OrderEvent.UPDATE:
            try:
                qty, price = float(f.get("last_qty") or 0), float(f.get("last_price") or 0)
                when = int(f.get("ts_event") or f.get("ts") or 0)
            except ValueError:
                continue
            if qty > 0 and price > 0:
                out.fills.append((when, price, f.get("side", "")))
    for name, got in (("bars", bars), ("trades", trades), ("orders", orders)):
        if got:
            ids[name] = got[-1][0]
        else:
            ids.setdefault(name, "0-0")
    return out


async def read_orders(
    redis: aioredis.Redis, settings: Settings, limit: int = 30
) -> list[dict[str, str]]:
    """The latest state of the ``limit`` most recent orders, newest first."""
    page: list[Any] = list(await redis.xrevrange(settings.keys.orders(settings.venue),
                                                 count=READ_LIMIT) or [])  # fmt: skip
    orders: dict[str, dict[str, str]] = {}
    for entry_id, fields in reversed(page):
        f = decode_fields(fields or {})
        if f.get("event") == "instruments":
            continue  # a symbol's filters on record for strategies, not an order
        coid = f.get("client_order_id", "")
        row = orders.setdefault(coid, {"client_order_id": coid, "first_id": text_of(entry_id)})
        event = f.get("event", "")
        row.update({k: v for k, v in f.items() if v and k in _ORDER_FIELDS})
        row["event"] = event
        row["state"] = _ORDER_STATES.get(event, f.get("status") or event.upper())
    rows = sorted(orders.values(), key=lambda r: r["first_id"], reverse=True)
    return rows[:limit]


async def read_positions(redis: aioredis.Redis, settings: Settings) -> dict[str, dict[str, str]]:
    """Positions and PnL per symbol from the positions hash."""
    raw = decode_fields(await redis.hgetall(settings.keys.positions(settings.venue)))
    out: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        symbol, _, figure = name.partition(":")
        out.setdefault(symbol, {})[figure or "position"] = value
    return dict(sorted(out.items()))


async def read_book(redis: aioredis.Redis, settings: Settings, symbol: str) -> dict[str, Any]:
    """The latest quote and book entry of ``symbol`` (empty dicts when there is none)."""
    part = settings.partition_of(symbol)
    found: dict[str, Any] = {"quote": {}, "book": {}}
    for name, stream in (("quote", settings.keys.quotes(part)), ("book", settings.keys.book(part))):
        page: list[Any] = list(await redis.xrevrange(stream, count=50) or [])
        for _, fields in page:
            f = decode_fields(fields or {})
            if f.get("symbol", symbol) == symbol:
                found[name] = f
                break
    return found


async def read_health_view(redis: aioredis.Redis, settings: Settings) -> dict[str, Any]:
    """Health records, streams with their groups' lag and pending."""
    streams = await read_streams(redis, settings)
    return {
        "health": await read_health(redis, settings.keys),
        "streams": [
            {"name": s.name, "kind": s.kind, "length": s.length,
             "groups": [{"name": g.name, "pending": g.pending, "lag": g.lag} for g in s.groups]}
            for s in streams
        ],
    }  # fmt: skip


def latency_summary(samples: dict[str, list[float]]) -> list[dict[str, str]]:
    """Median and 95th percentile in milliseconds per hop."""
    rows = []
    for hop, values in samples.items():
        if not values:
            rows.append({"hop": hop, "p50_ms": "-", "p95_ms": "-", "n": "0"})
            continue
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        rows.append({"hop": hop, "p50_ms": f"{statistics.median(ordered):.1f}",
                     "p95_ms": f"{p95:.1f}", "n": str(len(ordered))})  # fmt: skip
    return rows


async def read_latency(redis: aioredis.Redis, settings: Settings) -> list[dict[str, str]]:
    """Per-hop latency from the newest trades, signals and order intents."""
    ms = 1e6
    samples: dict[str, list[float]] = {
        "venue → ingestor (ts_recv - ts_event)": [],
        "ingestor → processor (ts_proc - ts_recv)": [],
        "ingestor → signal (ts_signal - ts_recv)": [],
        "signal → order sent (ts_intent - ts_signal)": [],
        "venue → order sent (ts_intent - ts_event)": [],
    }
    hops = list(samples.values())
    signal_event: dict[str, int] = {}
    for part in settings.partitions():
        page: list[Any] = list(await redis.xrevrange(settings.keys.trades(part), count=200) or [])
        for _, fields in page:
            f = decode_fields(fields or {})
            with contextlib.suppress(KeyError, ValueError):
                hops[0].append((int(f["ts_recv"]) - int(f["ts_event"])) / ms)
                if int(f.get("ts_proc") or 0):
                    hops[1].append((int(f["ts_proc"]) - int(f["ts_recv"])) / ms)
        page = list(await redis.xrevrange(settings.keys.signals(part), count=200) or [])
        for _, fields in page:
            f = decode_fields(fields or {})
            with contextlib.suppress(KeyError, ValueError):
                hops[2].append((int(f["ts_signal"]) - int(f["ts_recv"])) / ms)
                signal_event[f["signal_id"]] = int(f["ts_event"])
    page = list(await redis.xrevrange(settings.keys.orders(settings.venue), count=500) or [])
    for _, fields in page:
        f = decode_fields(fields or {})
        if f.get("event") != OrderEvent.INTENT:
            continue
        with contextlib.suppress(KeyError, ValueError):
            hops[3].append((int(f["ts_intent"]) - int(f["ts_signal"])) / ms)
            if f.get("signal_id") in signal_event:
                hops[4].append((int(f["ts_intent"]) - signal_event[f["signal_id"]]) / ms)
    return latency_summary(samples)
