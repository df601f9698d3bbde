"""Run strategies over recorded raw frames with the live processing code: ``tickpipe backtest``.

The frames of a recording become the raw entries ``tickpipe replay`` would write
(:class:`tools.raw_route.RawRouter`), or are read from the ``raw`` streams of a Redis range, and
each goes through :func:`processor.core.process_batch` with a
:class:`~processor.state.PartitionState` built exactly as a processor member builds it
(:meth:`PartitionState.from_settings`: the same strategies, plug-ins and settings). The signals
are therefore the ones the live pipeline makes from the same raw stream, apart from ``cause``
(raw entry ids, which Redis assigns when the frames are written) and the ``ts_signal`` stamp
(processing time; here the frame's receive time). Their orders are filled by
:class:`tools.fill_model.FillModel` (the mock's matching engine on the recorded book, after
the trader's instrument filters), whose assumptions its docstring states.

Each frame is its own batch: the processor's outputs do not depend on batch boundaries, and it
lets the fill model see every trade and signal in stream order. Each simulated fill goes back
to the strategy that placed the order as the venue's update would (:func:`fill_update`), with
the partition's next frame, through the same ``orders`` hooks as live.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

import orjson

from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.schema import OrderUpdate, RawFrame, Signal
from tickpipe.common.settings import Settings
from tickpipe.processor.books import OrderBook
from tickpipe.processor.core import PartitionState, process_batch
from tickpipe.processor.entries import BadEntry
from tickpipe.tools.fill_model import Fill, FillModel
from tickpipe.tools.raw_route import LEFT_OUT, RawRouter
from tickpipe.tools.recordings import Recorded

__all__ = ["BacktestResult", "Entry", "entries_of_records", "run_backtest", "summary_lines"]

#: One raw entry of a partition: (partition, entry id, frame).
Entry = tuple[str, str, RawFrame | BadEntry]


@dataclass
class BacktestResult:
    """What a backtest saw and made."""

    model: FillModel
    signals: list[Signal] = field(default_factory=list)
    frames: int = 0
    left_out: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_ns: int | None = None
    last_ns: int | None = None


def entries_of_records(
    settings: Settings, records: Iterable[Recorded | tuple[int, str]], *, conn: str,
    left_out: list[int] | None = None,
) -> Iterator[Entry]:  # fmt: skip
    """The raw entries a replay of ``records`` writes, with entry ids in increasing order.

    Ids are ``<receive ms>-<n>`` (kept increasing when receive times are not); ``left_out``
    (a one-element counter) counts the frames nothing can use.
    """
    router = RawRouter(settings, conn)
    last: dict[str, tuple[int, int]] = {}
    for rec in records:
        routed, kind = router.route(rec)
        if kind == LEFT_OUT and left_out is not None:
            left_out[0] += 1
        for stream, frame in routed:
            ms = frame.ts_recv // 1_000_000
            prev_ms, prev_n = last.get(stream, (-1, 0))
            ms, n = (ms, 0) if ms > prev_ms else (prev_ms, prev_n + 1)
            last[stream] = (ms, n)
            yield str(router.partitions[stream]), f"{ms}-{n}", frame


def run_backtest(
    settings: Settings, entries: Iterable[Entry], *, latency_ms: int = 0,
    fee_bps: Decimal = Decimal(0), out: TextIO | None = None, progress_s: float = 5.0,
    filters: Mapping[str, InstrumentFilters] | None = None,
    fraction: Callable[[], float | None] | None = None, limit: int | None = None,
    clock: Callable[[], int] = time.monotonic_ns,
) -> BacktestResult:  # fmt: skip
    """Process ``entries`` as the processor does and fill their signals; return the result.

    Progress goes to ``out`` every ``progress_s`` seconds of ``clock`` (ns); ``fraction`` says
    how far through its input the reader is; ``limit`` stops after that many frames.
    ``filters``: the venue's instrument filters by symbol (default: the mock's).
    """
    out = out or sys.stderr
    states: dict[str, PartitionState] = {}

    def book_of(symbol: str) -> OrderBook | None:
        for state in states.values():
            book = state.books.book(symbol)
            if book is not None:
                return book
        return None

    model = FillModel(
        tuple(settings.symbols),
        latency_ns=latency_ms * 1_000_000,
        default_order_type=settings.order_type,
        fee_bps=fee_bps,
        filters=filters,
        book_of=book_of,
    )
    result = BacktestResult(model)
    feedback: dict[str, list[tuple[str, OrderUpdate]]] = {}  # partition -> fills to hand over
    fill_ids = _FillIds()
    started = clock()
    next_report = started + int(progress_s * 1e9)
    for partition, entry_id, frame in entries:
        if limit is not None and result.frames >= limit:
            break
        state = states.get(partition)
        if state is None:
            state = states[partition] = PartitionState.from_settings(
                settings, partition, partition.split(":", 1)[0]
            )
        ts_now = frame.ts_recv if isinstance(frame, RawFrame) else (result.last_ns or 0)
        updates = feedback.pop(partition, [])
        batch = process_batch(state, [(entry_id, frame)], ts_now, updates=updates)
        result.frames += 1
        if isinstance(frame, RawFrame):
            result.first_ns = result.first_ns if result.first_ns is not None else frame.ts_recv
            result.last_ns = frame.ts_recv
        for quote in batch.quotes:
            model.on_quote(quote)
        fills = [fill for trade in batch.trades for fill in model.on_trade(trade)]
        fills += [
            fill for top in batch.book_tops for fill in model.on_book(top.symbol, top.ts_event)
        ]
        model.sync_queues()
        for fill in fills:
            update = fill_update(fill, settings.venue)
            feedback.setdefault(partition, []).append((fill_ids.next(fill.ts_event), update))
        for signal in batch.signals:
            model.on_signal(signal)
        result.signals += batch.signals
        result.warnings += batch.warnings
        if clock() >= next_report:
            next_report = clock() + int(progress_s * 1e9)
            out.write(_progress(result, clock() - started, fraction() if fraction else None))
            out.flush()
    model.sample_equity()
    result.partitions = sorted(states)
    for counts in [*(state.counters for state in states.values()), model.counters]:
        for name, value in counts.items():
            result.counters[name] = result.counters.get(name, 0) + value
    result.seconds = (clock() - started) / 1e9
    return result


class _FillIds:
    """Increasing stream-like ids (``<ms>-<n>``) for the simulated order updates."""

    def __init__(self) -> None:
        self.last = (-1, 0)

    def next(self, ts_event: int) -> str:
        ms = ts_event // 1_000_000
        self.last = (ms, 0) if ms > self.last[0] else (self.last[0], self.last[1] + 1)
        return f"{self.last[0]}-{self.last[1]}"


def fill_update(fill: Fill, venue: str) -> OrderUpdate:
    """The order update a venue would send for a simulated fill (FILLED or PARTIALLY_FILLED)."""
    quote = Decimal(fill.qty) * Decimal(fill.price)
    return OrderUpdate(
        venue=venue, symbol=fill.symbol, client_order_id=fill.client_order_id,
        order_id=fill.client_order_id, side=fill.side.upper(), order_type="", status=fill.status,
        exec_type="TRADE", qty=fill.order_qty or fill.qty, price=fill.price,
        filled_qty=fill.filled_qty or fill.qty,
        last_qty=fill.qty, last_price=fill.price, cum_quote=f"{quote.normalize():f}",
        trade_id=f"sim-{fill.trade_id}", ts_event=fill.ts_event, ts_recv=fill.ts_event,
    )  # fmt: skip


def _progress(result: BacktestResult, elapsed_ns: int, done: float | None) -> str:
    where = ""
    if done:
        left = elapsed_ns / 1e9 * (1 - done) / done
        where = f" ({done:.1%} of the input, about {left:,.0f} s left)"
    return (
        f"backtest: {result.frames:,} frames{where}, {len(result.signals):,} signals, "
        f"{len(result.model.fills):,} fills\n"
    )


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001')).normalize():f}"


def summary_lines(result: BacktestResult, *, latency_ms: int, fee_bps: Decimal) -> list[str]:
    """The summary ``tickpipe backtest`` prints: inputs, signals, orders, positions, PnL."""
    model, c = result.model, result.counters
    span = ((result.last_ns or 0) - (result.first_ns or 0)) / 1e9
    by_strategy: dict[str, int] = {}
    for s in result.signals:
        by_strategy[s.strategy] = by_strategy.get(s.strategy, 0) + 1
    statuses: dict[str, int] = {}
    for order in model.orders.values():
        statuses[order.status] = statuses.get(order.status, 0) + 1
    named = ", ".join(f"{k} {v:,}" for k, v in sorted(by_strategy.items())) or "none"
    lines = [
        f"input: {result.frames:,} frames, {span:,.1f} s recorded, partitions "
        f"{', '.join(result.partitions) or 'none'}; processed in {result.seconds:,.1f} s",
        f"market: {c.get('trades', 0):,} trades, {c.get('quotes', 0):,} quotes, "
        f"{c.get('final_bars', 0):,} final bars, {c.get('dead_letters', 0):,} dead letters",
        f"signals: {len(result.signals):,} ({named}); strategy errors "
        f"{c.get('strategy_errors', 0):,}",
        f"orders: {len(model.orders):,} ("
        + (", ".join(f"{k.lower()} {v:,}" for k, v in sorted(statuses.items())) or "none")
        + f"); fills: {len(model.fills):,}",
    ]
    realized = marked = fees = Decimal(0)
    for (strategy, symbol), p in sorted(model.positions.items()):
        realized += p.realized
        marked += p.unrealized()
        fees += p.fees
        lines.append(
            f"position {strategy} {symbol}: qty {_money(p.qty)} avg {_money(p.avg_price)} "
            f"realised {_money(p.realized)} marked {_money(p.unrealized())}"
        )
    lines.append(
        f"PnL: realised {_money(realized)}, marked {_money(marked)}, total "
        f"{_money(realized + marked)} (fees {_money(fees)}); max drawdown "
        f"{_money(model.max_drawdown)}"
    )
    for order in model.refused[:5]:
        lines.append(f"refused {order.signal_id}: {order.reason}")
    lines.append(
        f"assumptions: latency {latency_ms} ms, fee {fee_bps} bps, the trader's filters, the "
        "mock's matching engine on the recorded book (market orders walk it), resting limits "
        "behind the visible queue at their price; "
        f"{c.get('fills_without_book', 0):,} orders met no live book, "
        f"{c.get('late_trades_passed', 0):,} late trades met no order (docs/strategies.md)"
    )
    return lines


def signal_line(signal: Signal) -> bytes:
    """One line of ``signals.jsonl``: the signal's stream fields."""
    return orjson.dumps(signal.to_fields()) + b"\n"
