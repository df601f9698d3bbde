"""Turn a partition's raw frames into trades, bars, signals and dead letters (pure, no I/O).

:func:`process_batch` is the whole processing step of one partition: it folds a batch of raw
entries into :class:`~processor.state.PartitionState` and returns what to write. The outputs are
a pure function of the raw entries; ``ts_now`` only fills the ``ts_proc`` / ``ts_signal``
stamps. Splitting the same entries into batches differently gives the same trades, signals and
final bars (partial bars are views of the forming candle, one per touched bar per batch).

New entries at or before the checkpoint's last entry id are acknowledged without output (a
rewound group); pending entries (claimed at a takeover) are processed whatever their id, and
what was already committed is recognised by its content. Quotes are de-duplicated by update
id, trades by trade id per symbol. Every trade, quote and depth diff must be plausible
(:mod:`processor.plausible`): one that is not is a dead letter and never reaches the
watermark, the bars or the strategies. A trade id jump is a gap: recorded, the missing range
remembered, a REST backfill asked of the ingestor, and the hole kept open until backfilled
trades fill it or the ingestor reports it cannot (:mod:`processor.holes`). Order books
(:mod:`processor.books`) are not checkpointed: after a takeover each symbol's next diff asks for
a fresh snapshot. Request replies and channels read but not normalised are passed over and
counted; a frame that cannot be parsed, fails validation or belongs to an unknown channel
becomes a :class:`DeadLetter`.

A signal's id names the decision: venue, symbol, the venue's id of the trade that caused it
(``t`` trade ids, ``a`` aggregate ids), the strategy and the index of the strategy's answer.
It is the same on every replay and differs for every decision, also for the trades of one
REST backfill page, which share one raw entry. Strategies get only the inputs they declared
(trades, quotes, book changes, final and revised bars, an event-time timer) at the point of the
raw stream where each event is made, through :mod:`processor.dispatch`, which also names the
signals of the other inputs and isolates a strategy that raises.

Frames of a venue that packs many messages a frame (Alpaca: its description's
``classify_messages``, :mod:`venues.alpaca.market`) are classified message by message: trades are
de-duplicated by (symbol, id) among the recent ids (Alpaca ids skip values, so no gaps are
recorded) and feed the same bars and strategies; venue bars, corrections and statuses are passed
through; each message that fails validation is one dead letter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tickpipe.common.contract import RawKind
from tickpipe.common.errors import DecodeError
from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.l1 import merge_l1
from tickpipe.common.messages import (
    BadMessage,
    BookUpdate,
    DepthDiff,
    DepthSnapshot,
    L1Update,
    MarketItem,
    MessageItem,
    PartialDepth,
    Ticker,
    Trades,
    VenueBar,
)
from tickpipe.common.schema import Bar, OrderUpdate, Quote, RawFrame, Signal, Trade
from tickpipe.processor.books import BookOutput
from tickpipe.processor.dispatch import advance_timers, route, route_own_updates
from tickpipe.processor.entries import BadEntry, DeadLetter, count, entry_key, fold_entries
from tickpipe.processor.markers import BackfillDone, Connect, classify_marker
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.records import (
    BackfillRequest,
    BookTop,
    GapRecord,
    GapResolution,
    SnapshotRequest,
    TradeCorrection,
    VenueStatus,
)
from tickpipe.processor.state import COUNTERS, PartitionState
from tickpipe.processor.strategies import (
    BAR_REVISIONS,
    BARS,
    BOOK,
    INSTRUMENTS,
    ORDERS,
    QUOTES,
    TIMER,
    TRADES,
)
from tickpipe.processor.venue_bars import revise_bar
from tickpipe.venues.registry import VENUES

#: What a raw frame carries: a marker, one market item, or one item per message.
Classified = MarketItem | Connect | BackfillDone | list[MessageItem]

__all__ = [
    "COUNTERS",
    "BadEntry",
    "BatchOutput",
    "DeadLetter",
    "PartitionState",
    "build_strategies",
    "entry_key",
    "process_batch",
    "signal_id_for",
]

#: Raw kinds as plain strings: compared per frame, where an enum lookup costs.
_REST, _MARKER = RawKind.REST.value, RawKind.MARKER.value


@dataclass
class BatchOutput:
    """What one batch produced; ``acked`` lists every input entry id, in order.

    ``warnings`` are the lines the shell logs once the batch is committed: every new trade-id
    gap, every hole resolution, a repaired watermark.
    """

    trades: list[Trade] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    book_tops: list[BookTop] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    resolutions: list[GapResolution] = field(default_factory=list)
    snapshot_requests: list[SnapshotRequest] = field(default_factory=list)
    backfill_requests: list[BackfillRequest] = field(default_factory=list)
    venue_bars: list[Bar] = field(default_factory=list)
    corrections: list[TradeCorrection] = field(default_factory=list)
    statuses: list[VenueStatus] = field(default_factory=list)
    tickers: list[Ticker] = field(default_factory=list)
    partial_depths: list[PartialDepth] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    frames: int = 0


def signal_id_for(trade: Trade, strategy: str, index: int, *, aggregate: bool = False) -> str:
    """Return the id of a strategy's ``index``-th decision on ``trade``.

    ``venue|symbol|t<trade id>|strategy|index`` (``a<id>`` for aggregate trade ids): the venue's
    own identity of the causing event, so it survives replays and never repeats.
    """
    space = "a" if aggregate else "t"
    return f"{trade.venue}|{trade.symbol}|{space}{trade.trade_id}|{strategy}|{index}"


def process_batch(
    state: PartitionState,
    entries: Sequence[tuple[str, RawFrame | BadEntry]],
    ts_now: int,
    *,
    pending: bool = False,
    updates: Sequence[tuple[str, OrderUpdate]] = (),
    order_events: Sequence[tuple[str, OrderUpdate | InstrumentFilters]] = (),
) -> BatchOutput:
    """Fold ``entries`` (in stream order) into ``state``; return the outputs to write.

    ``pending``: the entries were pending in the group (claimed at a takeover, or read before a
    restart), so an entry id at or before the checkpoint does not prove they were committed.
    ``updates``: ``order-updates`` entries, and ``order_events``: the trader's refusals and
    instrument filters (``{V}:orders`` entries), handed first to the strategies whose orders
    they are or that follow the filters (those at or before the checkpoint's last ones are
    passed over).
    """
    out = BatchOutput()
    if (updates or order_events) and (state.routes[ORDERS] or state.routes[INSTRUMENTS]):
        route_own_updates(state, out.signals, out.warnings, updates, ts_now,
                          order_events=order_events)  # fmt: skip
    books = BookOutput()
    counters = state.counters
    if state.check_watermark:
        _check_watermark(state, out, entries)

    def classify_now(entry_id: str, frame: RawFrame) -> Classified:
        return _classify(entry_id, frame, ts_now)

    for entry_id, frame, result in fold_entries(state, out, entries, classify_now, pending=pending):
        if type(result) is Trades:
            live = frame.kind != _REST
            for trade in result.items:
                if trade.ts_proc != ts_now:
                    trade = dataclasses.replace(trade, ts_proc=ts_now)
                _on_trade(state, out, trade, ts_now, aggregate=result.aggregate, live=live)
            for reason, data in result.rejected:
                _reject(state, out, entry_id, reason, data)
        elif isinstance(result, list):
            _on_messages(state, out, books, entry_id, frame, result, ts_now)
        elif isinstance(result, Quote):
            _on_quote(state, out, entry_id, dataclasses.replace(result, ts_proc=ts_now))
        elif isinstance(result, DepthDiff):
            problem = state.plausible.time_problem(result.ts_event, result.ts_recv, live=True)
            if problem is not None:
                what = f"depth update {result.last_id} of {result.symbol}"
                _reject(state, out, entry_id, f"{what}: {problem}", frame.data)
                continue
            _add_finals(state, out, state.bars.advance(result.ts_event), ts_now)
            tops = len(books.tops)
            state.books.on_diff(result, ts_now, books)
            _tops_to_strategies(state, out, books.tops[tops:], ts_now)
        elif isinstance(result, VenueBar | Ticker):
            _on_messages(state, out, books, entry_id, frame, [result], ts_now)
        elif isinstance(result, PartialDepth):  # the venue's top levels: not the diffs' book
            out.partial_depths.append(dataclasses.replace(result, ts_proc=ts_now))
            counters["partial_depths"] += 1
        elif isinstance(result, DepthSnapshot):
            tops = len(books.tops)
            state.books.on_snapshot(result, ts_now, books)
            _tops_to_strategies(state, out, books.tops[tops:], ts_now)
        elif isinstance(result, Connect):
            counters["markers"] += 1
            _request_backfills(state, out, state.holes.on_connect(result.run, entry_id))
        elif isinstance(result, BackfillDone):
            counters["markers"] += 1
            for resolution in state.holes.on_backfill_done(result, entry_id, ts_now):
                _resolve(state, out, resolution)
    out.bars.extend(state.bars.flush())
    out.book_tops = books.tops
    out.gaps.extend(books.gaps)
    out.snapshot_requests = books.requests
    counters["book_tops"] += len(out.book_tops)
    counters["gaps"] += len(out.gaps)
    counters["dead_letters"] += len(out.dead_letters)
    return out


def _tops_to_strategies(
    state: PartitionState, out: BatchOutput, tops: list[BookTop], ts_now: int
) -> None:
    """Route book changes at once, so strategies see them in raw order with the trades."""
    for top in tops:
        if state.routes[TIMER]:
            advance_timers(state, out.signals, out.warnings, top.ts_event, ts_now)
        if state.routes[BOOK]:
            ident = f"{top.venue}|{top.symbol}|d{top.update_id}"
            _route(state, out, BOOK, "on_book", top, ident, "", top.ts_recv, ts_now)


def _route(
    state: PartitionState,
    out: BatchOutput,
    kind: str,
    hook: str,
    event: Any,
    ident: str,
    cause: str,
    ts_recv: int,
    ts_now: int,
) -> None:
    """Hand ``event`` (a market event with ``venue`` and ``ts_event``) to the strategies that
    route ``kind``, through their ``hook``; ``ident`` names it in their signals' ids."""
    route(
        state,
        out.signals,
        out.warnings,
        state.routes[kind],
        kind,
        hook,
        event,
        ident=ident,
        venue=event.venue,
        cause=cause,
        ts_event=event.ts_event,
        ts_recv=ts_recv,
        ts_now=ts_now,
    )


def _check_watermark(
    state: PartitionState, out: BatchOutput, entries: Sequence[tuple[str, RawFrame | BadEntry]]
) -> None:
    """Check a loaded checkpoint's watermark against the first frame's receive time."""
    for _, frame in entries:
        if isinstance(frame, RawFrame):
            state.check_watermark = False
            note = state.repair_watermark(frame.ts_recv)
            if note is not None:
                out.warnings.append(note)
            return


def _classify(entry_id: str, frame: RawFrame, ts_now: int) -> Classified:
    """Classify a frame: markers here; market data by its venue's classifier, whole frames or
    (a venue that packs many messages a frame, Alpaca) message by message."""
    if frame.kind == "marker":
        return classify_marker(frame)
    rules = VENUES.get(frame.venue)
    if rules is None:
        raise DecodeError(f"no parser for venue {frame.venue!r}")
    if rules.classify_messages is not None:
        return rules.classify_messages(entry_id, frame)
    assert rules.classify_frame is not None  # a description sets one of the two
    return rules.classify_frame(entry_id, frame, ts_now)


def _reject(state: PartitionState, out: BatchOutput, entry_id: str, reason: str, data: str) -> None:
    """Dead-letter one event that cannot be believed (its time, price or quantity)."""
    state.counters["implausible"] += 1
    out.dead_letters.append(DeadLetter(entry_id, reason, data))


def _on_quote(state: PartitionState, out: BatchOutput, entry_id: str, quote: Quote) -> None:
    problem = state.plausible.quote_problem(quote, live=True)
    if problem is not None:
        _reject(state, out, entry_id, problem, orjson.dumps(quote.to_fields()).decode())
        return
    if not quote.update_id:  # a venue without quote sequence numbers (Alpaca)
        out.quotes.append(quote)
        state.counters["quotes"] += 1
        _quote_to_strategies(state, out, entry_id, quote)
        return
    update_id = int(quote.update_id)
    last = state.last_quote_id.get(quote.symbol)
    if last is not None and update_id <= last:
        state.counters["duplicate_quotes"] += 1
        return
    state.last_quote_id[quote.symbol] = update_id
    out.quotes.append(quote)
    state.counters["quotes"] += 1
    _quote_to_strategies(state, out, entry_id, quote)


def _quote_to_strategies(state: PartitionState, out: BatchOutput, entry_id: str, q: Quote) -> None:
    if state.routes[TIMER]:
        advance_timers(state, out.signals, out.warnings, q.ts_event, q.ts_proc)
    if state.routes[QUOTES]:
        ident = f"{q.venue}|{q.symbol}|q{q.update_id or entry_id}"
        _route(state, out, QUOTES, "on_quote", q, ident, entry_id, q.ts_recv, q.ts_proc)


def _add_finals(
    state: PartitionState, out: BatchOutput, bars: list[Bar], ts_now: int, revised: int = 0
) -> None:
    """Emit final bars; the last ``revised`` of them are revisions of bars already final."""
    out.bars.extend(bars)
    state.counters["final_bars"] += len(bars)
    if not (state.routes[BARS] or state.routes[BAR_REVISIONS]):
        return
    first_revision = len(bars) - revised
    for i, bar in enumerate(bars):
        kind, hook = (BARS, "on_bar") if i < first_revision else (BAR_REVISIONS, "on_bar_revision")
        if state.routes[kind]:
            ident = f"{bar.venue}|{bar.symbol}|b{bar.interval}@{bar.ts_open}r{bar.revision}"
            _route(state, out, kind, hook, bar, ident, "", bar.ts_event, ts_now)


def _request_backfills(
    state: PartitionState, out: BatchOutput, requests: list[BackfillRequest]
) -> None:
    out.backfill_requests += requests
    state.counters["backfill_requests"] += len(requests)
    for r in requests:
        out.warnings.append(
            f"trade ids {r.first_id}..{r.last_id} of {r.symbol} ({r.stream}) missing: "
            f"backfill requested ({r.reason})"
        )


def _resolve(state: PartitionState, out: BatchOutput, resolution: GapResolution) -> None:
    out.resolutions.append(resolution)
    r = resolution
    state.counters["holes_backfilled" if r.status == "backfilled" else "holes_unrecoverable"] += 1
    out.warnings.append(
        f"trade ids {r.first_id}..{r.last_id} of {r.symbol} ({r.stream}) {r.status}: "
        f"{r.missing} still missing; {r.reason}"
    )


def _on_trade(
    state: PartitionState,
    out: BatchOutput,
    trade: Trade,
    ts_now: int,
    *,
    aggregate: bool,
    live: bool,
) -> None:
    counters = state.counters
    problem = state.plausible.trade_problem(trade, live=live)
    if problem is not None:  # not seen either: its id stays missing, so it is asked for again
        _reject(state, out, trade.src, problem, orjson.dumps(trade.to_fields()).decode())
        return
    stream = "aggTrades" if aggregate else "trades"
    rules = VENUES.get(trade.venue)
    if rules is not None and not rules.contiguous_trade_ids:  # ids unique, not contiguous: no gaps
        seen = state.recent_ids.seen(trade.symbol, int(trade.trade_id))
        verdict, expected = ("duplicate" if seen else "new"), None
    else:
        id_space = f"{trade.symbol}@agg" if aggregate else trade.symbol
        verdict, expected = state.trade_ids.see(id_space, int(trade.trade_id))
    if verdict == "duplicate":
        counters["duplicate_trades"] += 1
        return
    if verdict == "backfill":
        counters["trades_backfilled"] += 1
        filled = state.holes.on_backfilled(
            trade.symbol, stream, int(trade.trade_id), trade.src, ts_now
        )
        if filled is not None:
            _resolve(state, out, filled)
    if expected is not None:
        counters["trade_id_gaps"] += 1
        out.gaps.append(
            GapRecord(
                venue=trade.venue,
                symbol=trade.symbol,
                stream=stream,
                expected=str(expected),
                received=trade.trade_id,
                entry_id=trade.src,
                ts_event=trade.ts_event,
                ts_recv=trade.ts_recv,
                ts_proc=ts_now,
            )
        )
        request, given_up = state.holes.open_hole(
            trade.symbol, stream, expected, int(trade.trade_id) - 1, trade.src, ts_now
        )
        for resolution in given_up:
            _resolve(state, out, resolution)
        _request_backfills(state, out, [request])
    out.trades.append(trade)
    counters["trades"] += 1
    revisions = state.bars.revisions
    bars, too_late = state.bars.on_trade(trade)
    revised = state.bars.revisions - revisions
    if revised:
        counters["bar_revisions"] += revised
    if bars:
        _add_finals(state, out, bars, ts_now, revised)
    if too_late:
        counters["late_trades"] += 1
        reason = (
            f"trade {trade.trade_id} too late for the {','.join(too_late)} bars: "
            f"watermark {state.bars.watermark}, revision horizon passed"
        )
        data = orjson.dumps(trade.to_fields()).decode()
        out.dead_letters.append(DeadLetter(trade.src, reason, data))
    if state.routes[TIMER]:
        advance_timers(state, out.signals, out.warnings, trade.ts_event, ts_now)
    if state.routes[TRADES]:
        ident = f"{trade.venue}|{trade.symbol}|{'a' if aggregate else 't'}{trade.trade_id}"
        _route(state, out, TRADES, "on_trade", trade, ident, trade.src, trade.ts_recv, ts_now)


def _on_l1(
    state: PartitionState,
    out: BatchOutput,
    entry_id: str,
    frame: RawFrame,
    update: L1Update,
    ts_now: int,
) -> None:
    """Merge one changed-fields update into the symbol's level-1 view (:mod:`common.l1`).

    A venue that samples (IBKR) shows two trades within one update as one, and a trade at the
    same price and size as the one before as none: its trades are the venue's samples.
    """
    view = state.l1.setdefault(update.symbol, {})
    quote, trade, incomplete = merge_l1(
        view, update, venue=frame.venue, src=f"{entry_id}#0", ts_proc=ts_now
    )
    state.counters["l1_incomplete"] += incomplete
    if quote is not None:
        _on_quote(state, out, entry_id, quote)
    if trade is not None:
        _on_trade(state, out, trade, ts_now, aggregate=False, live=frame.kind != _REST)


def _on_messages(
    state: PartitionState,
    out: BatchOutput,
    books: BookOutput,
    entry_id: str,
    frame: RawFrame,
    items: list[MessageItem],
    ts_now: int,
) -> None:
    """Fold the messages of one many-message frame (Alpaca) in, in order."""
    counters = state.counters
    for item in items:
        if isinstance(item, str):
            count(counters, item)
        elif isinstance(item, Trade):
            trade = dataclasses.replace(item, ts_proc=ts_now)
            _on_trade(state, out, trade, ts_now, aggregate=False, live=frame.kind != _REST)
        elif isinstance(item, Quote):
            _on_quote(state, out, entry_id, dataclasses.replace(item, ts_proc=ts_now))
        elif isinstance(item, VenueBar):
            out.venue_bars.append(revise_bar(state.venue_bar_revisions, item))
            counters["venue_bars"] += 1
        elif isinstance(item, TradeCorrection):
            out.corrections.append(dataclasses.replace(item, ts_proc=ts_now))
            counters["corrections"] += 1
        elif isinstance(item, VenueStatus):
            out.statuses.append(dataclasses.replace(item, ts_proc=ts_now))
            counters["statuses"] += 1
        elif isinstance(item, L1Update):
            _on_l1(state, out, entry_id, frame, item, ts_now)
        elif isinstance(item, BookUpdate):
            tops = len(books.tops)
            state.books.on_update(item, ts_now, books)
            _tops_to_strategies(state, out, books.tops[tops:], ts_now)
        elif isinstance(item, Ticker):
            out.tickers.append(dataclasses.replace(item, ts_proc=ts_now))
            counters["tickers"] += 1
        elif isinstance(item, BadMessage):
            out.dead_letters.append(DeadLetter(entry_id, item.reason, frame.data))
