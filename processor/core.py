"""Turn a partition's raw frames into trades, bars, signals and dead letters (pure, no I/O).

:func:`process_batch` is the whole processing step of one partition: it folds a batch of raw
entries into :class:`PartitionState` and returns what to write. The outputs are a pure function of
the raw entries; ``ts_now`` only fills the ``ts_proc`` / ``ts_signal`` stamps. The state is small
and round-trips through msgpack (:meth:`PartitionState.to_bytes`), so a member that takes a
partition over resumes exactly where the checkpoint left off, and splitting the same entries into
batches differently gives the same trades, signals and final bars (partial bars are views of the
forming candle, one per touched bar per batch).

New entries at or before the checkpoint's last entry id are acknowledged without output (a
rewound group); pending entries (claimed at a takeover) are processed whatever their id, and
what was already committed is recognised by its content.
Quotes are de-duplicated by update id, trades by trade id per symbol: a trade id jump is a gap
(recorded, with the missing range remembered so a later backfill fills it in). Order books
(:mod:`processor.books`) are not checkpointed: after a takeover each symbol's next diff asks for
a fresh snapshot. Markers, request replies and channels read but not normalised are passed over
and counted (per channel); a frame that cannot be parsed, fails validation or belongs to an
unknown channel becomes a :class:`DeadLetter`.

Alpaca frames (chosen by ``RawFrame.venue``) go through :mod:`processor.alpaca`: trades are
de-duplicated by (symbol, id) among the recent ids (Alpaca ids skip values, so no gaps are
recorded) and feed the same bars and strategies; venue bars, corrections and statuses are passed
through; each message that fails validation is one dead letter.

A signal's id names the decision: venue, symbol, the venue's id of the trade that caused it
(``t`` trade ids, ``a`` aggregate ids), the strategy and the index of the strategy's answer.
It is the same on every replay and differs for every decision, also for the trades of one
REST backfill page, which share one raw entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from common.errors import DecodeError
from common.schema import Bar, Quote, RawFrame, Signal, Trade
from common.settings import Settings
from processor.alpaca import AlpacaItem, BadMessage, VenueBar, classify_alpaca, revise_bar
from processor.bars import BarBuilder
from processor.books import BOOK_COUNTERS, BookKeeper, BookOutput, DepthDiff, DepthSnapshot
from processor.entries import BadEntry, DeadLetter, count, entry_key, fold_entries
from processor.frames import Classified, classify, is_reply
from processor.marketdata import Trades
from processor.records import BookTop, GapRecord, SnapshotRequest, TradeCorrection, VenueStatus
from processor.strategies import Strategy, build_strategies
from processor.tradeids import RecentIds, TradeIds

__all__ = [
    "COUNTERS",
    "BadEntry",
    "BatchOutput",
    "DeadLetter",
    "PartitionState",
    "build_strategies",
    "entry_key",
    "is_reply",
    "process_batch",
    "signal_id_for",
]

CHECKPOINT_VERSION = 2
MS_NS = 1_000_000

#: Counters every partition keeps (in its checkpoint, so they survive takeovers). Frames of
#: channels read but not normalised yet are also counted per channel, as ``ignored:<channel>``.
COUNTERS = (
    "frames",  # entries processed (not counting replays)
    "trades",  # trades emitted
    "duplicate_trades",  # trades dropped because their id was already seen
    "trade_id_gaps",  # times a symbol's trade id jumped by more than one
    "trades_backfilled",  # trades that filled a recorded gap
    "late_trades",  # trades too late for a bar's revision horizon (dead-lettered)
    "bar_revisions",  # final bars revised by a late trade
    "quotes",
    "duplicate_quotes",  # quotes dropped because their update id was not newer
    "book_tops",
    "gaps",  # gap records written (depth and trades)
    "markers",  # connect / disconnect / gap markers passed over
    "replies",  # request replies passed over
    "ignored",  # frames of channels read but not normalised (klines, tickers, partial depth)
    "dead_letters",
    "signals",
    "final_bars",
    "replayed",  # new entries at or before the checkpoint (a rewound group): no output
    "reprocessed",  # pending entries at or before the checkpoint, checked again by content
    "venue_bars",  # bars the venue published (Alpaca b/u/d)
    "corrections",  # trade corrections and cancel/errors the venue reported
    "statuses",  # trading status messages
    "venue_errors",  # error messages the venue sent on the data stream
    *BOOK_COUNTERS,
)


@dataclass
class BatchOutput:
    """What one batch produced; ``acked`` lists every input entry id, in order."""

    trades: list[Trade] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    book_tops: list[BookTop] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    snapshot_requests: list[SnapshotRequest] = field(default_factory=list)
    venue_bars: list[Bar] = field(default_factory=list)
    corrections: list[TradeCorrection] = field(default_factory=list)
    statuses: list[VenueStatus] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    frames: int = 0


def signal_id_for(trade: Trade, strategy: str, index: int, *, aggregate: bool = False) -> str:
    """Return the id of a strategy's ``index``-th decision on ``trade``.

    ``venue|symbol|t<trade id>|strategy|index`` (``a<id>`` for aggregate trade ids): the venue's
    own identity of the causing event, so it survives replays and never repeats.
    """
    space = "a" if aggregate else "t"
    return f"{trade.venue}|{trade.symbol}|{space}{trade.trade_id}|{strategy}|{index}"


class PartitionState:
    """Everything a partition needs to resume: bars, strategies, last ids, counters.

    The order books live here too but are not saved: a restored state starts without books.
    """

    def __init__(
        self,
        partition: str,
        venue: str,
        strategies: Iterable[Strategy] = (),
        *,
        lateness_ms: int = 2000,
        horizon_ms: int = 60_000,
        empty_bars: str = "skip",
    ) -> None:
        self.partition = partition
        self.venue = venue
        self.bars = BarBuilder(
            venue,
            lateness_ns=lateness_ms * MS_NS,
            horizon_ns=horizon_ms * MS_NS,
            empty=empty_bars,
        )
        self.strategies = list(strategies)
        self.trade_ids = TradeIds()
        self.recent_ids = RecentIds()  # venues with non-contiguous trade ids (Alpaca)
        self.venue_bar_revisions: dict[str, int] = {}  # "symbol|interval|ts_open" -> revision
        self.last_quote_id: dict[str, int] = {}
        self.last_entry_id = ""
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.books = BookKeeper(venue, counters=self.counters)

    @classmethod
    def from_settings(
        cls, settings: Settings, partition: str, venue: str, blob: bytes | None = None
    ) -> PartitionState:
        """Build a fresh state, or one restored from ``blob``, configured by ``settings``."""
        kwargs: dict[str, Any] = {
            "lateness_ms": settings.bar_lateness_ms,
            "horizon_ms": settings.bar_revision_horizon_ms,
            "empty_bars": settings.empty_bars,
        }
        strategies = build_strategies(settings)
        if blob is None:
            return cls(partition, venue, strategies, **kwargs)
        return cls.from_bytes(blob, partition, venue, strategies, **kwargs)

    @property
    def last_trade_id(self) -> dict[str, int]:
        return self.trade_ids.last

    @property
    def late_trades(self) -> int:
        return self.bars.late_trades

    def to_bytes(self) -> bytes:
        """Serialise the state with msgpack (the checkpoint)."""
        data = {
            "v": CHECKPOINT_VERSION,
            "partition": self.partition,
            "venue": self.venue,
            "last_entry_id": self.last_entry_id,
            "trade_ids": self.trade_ids.to_state(),
            "recent_ids": self.recent_ids.to_state(),
            "venue_bar_revisions": self.venue_bar_revisions,
            "last_quote_id": self.last_quote_id,
            "bars": self.bars.to_state(),
            "strategies": {s.name: s.to_state() for s in self.strategies},
            "counters": self.counters,
        }
        out: bytes = msgpack.packb(data, use_bin_type=True)
        return out

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        partition: str,
        venue: str,
        strategies: Iterable[Strategy] = (),
        **kwargs: Any,
    ) -> PartitionState:
        """Rebuild a state saved by :meth:`to_bytes`; strategies get their saved state back."""
        try:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            if not isinstance(data, dict) or data.get("v") not in (1, CHECKPOINT_VERSION):
                raise DecodeError("checkpoint has an unknown version")
            if data["partition"] != partition:
                raise DecodeError(f"checkpoint belongs to {data['partition']!r}, not {partition!r}")
            state = cls(partition, venue, strategies, **kwargs)
            state.last_entry_id = str(data["last_entry_id"])
            if data["v"] == 1:  # before quotes and backfills: only the highest trade ids
                state.trade_ids.load_state({"last": data["last_trade_id"], "missing": {}})
            else:
                state.trade_ids.load_state(data["trade_ids"])
            quote_ids = data.get("last_quote_id", {})
            state.last_quote_id = {str(k): int(v) for k, v in quote_ids.items()}
            state.recent_ids.load_state(data.get("recent_ids", {}))
            revisions = data.get("venue_bar_revisions", {})
            state.venue_bar_revisions = {str(k): int(v) for k, v in revisions.items()}
            state.bars.load_state(data["bars"])
            saved = data["strategies"]
            for strategy in state.strategies:
                if strategy.name in saved:
                    strategy.load_state(saved[strategy.name])
            state.counters.update({str(k): int(v) for k, v in data["counters"].items()})
        except DecodeError:
            raise
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise DecodeError(f"checkpoint is malformed: {exc!r}") from exc
        return state


def process_batch(
    state: PartitionState,
    entries: Sequence[tuple[str, RawFrame | BadEntry]],
    ts_now: int,
    *,
    pending: bool = False,
) -> BatchOutput:
    """Fold ``entries`` (in stream order) into ``state``; return the outputs to write.

    ``pending``: the entries were pending in the group (claimed at a takeover, or read before a
    restart), so an entry id at or before the checkpoint does not prove they were committed.
    """
    out = BatchOutput()
    books = BookOutput()
    counters = state.counters

    def classify_now(entry_id: str, frame: RawFrame) -> Classified | list[AlpacaItem]:
        return _classify(entry_id, frame, ts_now)

    folded = fold_entries(state, out, entries, classify_now, pending=pending)
    for entry_id, frame, result in folded:
        if type(result) is Trades:
            for trade in result.items:
                if trade.ts_proc != ts_now:
                    trade = dataclasses.replace(trade, ts_proc=ts_now)
                _on_trade(state, out, trade, ts_now, aggregate=result.aggregate)
        elif isinstance(result, list):
            _on_alpaca(state, out, entry_id, frame, result, ts_now)
        elif isinstance(result, Quote):
            _on_quote(state, out, dataclasses.replace(result, ts_proc=ts_now))
        elif isinstance(result, DepthDiff):
            _add_finals(state, out, state.bars.advance(result.ts_event))
            state.books.on_diff(result, ts_now, books)
        elif isinstance(result, DepthSnapshot):
            state.books.on_snapshot(result, ts_now, books)
    out.bars.extend(state.bars.flush())
    out.book_tops = books.tops
    out.gaps.extend(books.gaps)
    out.snapshot_requests = books.requests
    counters["book_tops"] += len(out.book_tops)
    counters["gaps"] += len(out.gaps)
    counters["dead_letters"] += len(out.dead_letters)
    return out


def _classify(entry_id: str, frame: RawFrame, ts_now: int) -> Classified | list[AlpacaItem]:
    """Classify a frame: an Alpaca market-data frame message by message, others whole."""
    if frame.venue == "alpaca" and frame.kind != "marker":
        return classify_alpaca(entry_id, frame)
    return classify(entry_id, frame, ts_proc=ts_now)


def _on_quote(state: PartitionState, out: BatchOutput, quote: Quote) -> None:
    if not quote.update_id:  # a venue without quote sequence numbers (Alpaca)
        out.quotes.append(quote)
        state.counters["quotes"] += 1
        return
    update_id = int(quote.update_id)
    last = state.last_quote_id.get(quote.symbol)
    if last is not None and update_id <= last:
        state.counters["duplicate_quotes"] += 1
        return
    state.last_quote_id[quote.symbol] = update_id
    out.quotes.append(quote)
    state.counters["quotes"] += 1


def _add_finals(state: PartitionState, out: BatchOutput, bars: list[Bar]) -> None:
    out.bars.extend(bars)
    state.counters["final_bars"] += len(bars)


def _on_trade(
    state: PartitionState, out: BatchOutput, trade: Trade, ts_now: int, *, aggregate: bool
) -> None:
    counters = state.counters
    if trade.venue == "alpaca":  # ids unique per symbol but not contiguous: no gaps
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
    if expected is not None:
        counters["trade_id_gaps"] += 1
        out.gaps.append(
            GapRecord(
                venue=trade.venue,
                symbol=trade.symbol,
                stream="aggTrades" if aggregate else "trades",
                expected=str(expected),
                received=trade.trade_id,
                entry_id=trade.src,
                ts_event=trade.ts_event,
                ts_recv=trade.ts_recv,
                ts_proc=ts_now,
            )
        )
    out.trades.append(trade)
    counters["trades"] += 1
    revisions = state.bars.revisions
    bars, too_late = state.bars.on_trade(trade)
    if state.bars.revisions != revisions:
        counters["bar_revisions"] += state.bars.revisions - revisions
    if bars:
        _add_finals(state, out, bars)
    if too_late:
        counters["late_trades"] += 1
        reason = (
            f"trade {trade.trade_id} too late for the {','.join(too_late)} bars: "
            f"watermark {state.bars.watermark}, revision horizon passed"
        )
        data = orjson.dumps(trade.to_fields()).decode()
        out.dead_letters.append(DeadLetter(trade.src, reason, data))
    for strategy in state.strategies:
        for n, spec in enumerate(strategy.on_trade(trade, ts_now)):
            out.signals.append(
                Signal(
                    signal_id=signal_id_for(trade, strategy.name, n, aggregate=aggregate),
                    venue=trade.venue,
                    symbol=spec.symbol,
                    strategy=strategy.name,
                    action=spec.action,
                    side=spec.side,
                    qty=spec.qty,
                    price=spec.price,
                    reason=spec.reason,
                    cause=spec.cause or trade.src,
                    ts_event=trade.ts_event,
                    ts_recv=trade.ts_recv,
                    ts_signal=ts_now,
                )
            )
            counters["signals"] += 1


def _on_alpaca(
    state: PartitionState,
    out: BatchOutput,
    entry_id: str,
    frame: RawFrame,
    items: list[AlpacaItem],
    ts_now: int,
) -> None:
    """Fold the messages of one Alpaca frame in, in order."""
    counters = state.counters
    for item in items:
        if isinstance(item, str):
            count(counters, item)
        elif isinstance(item, Trade):
            _on_trade(
                state, out, dataclasses.replace(item, ts_proc=ts_now), ts_now, aggregate=False
            )
        elif isinstance(item, Quote):
            _on_quote(state, out, dataclasses.replace(item, ts_proc=ts_now))
        elif isinstance(item, VenueBar):
            out.venue_bars.append(revise_bar(state.venue_bar_revisions, item))
            counters["venue_bars"] += 1
        elif isinstance(item, TradeCorrection):
            out.corrections.append(dataclasses.replace(item, ts_proc=ts_now))
            counters["corrections"] += 1
        elif isinstance(item, VenueStatus):
            out.statuses.append(dataclasses.replace(item, ts_proc=ts_now))
            counters["statuses"] += 1
        elif isinstance(item, BadMessage):
            out.dead_letters.append(DeadLetter(entry_id, item.reason, frame.data))
