"""Hold a partition's resumable state and its checkpoint encoding (pure, no I/O).

:class:`PartitionState` is everything a member needs to resume a partition where the last
commit left it: open and recently final bars, strategy state, trade ids and the open trade-id
holes, the last quote ids, counters. It round-trips through msgpack (:meth:`to_bytes`); order
books are not saved (a takeover rebuilds them from fresh snapshots).

A checkpoint written before event times were checked may hold a watermark poisoned by one
absurd event time (a trade dated centuries ahead), which would keep every later bar from
becoming final. After a checkpoint is loaded, the first frame's receive time is the yardstick:
a watermark more than the allowed lead ahead of it is repaired (:meth:`repair_watermark`) and
the repair is reported as a warning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tickpipe.common.settings import Settings
from tickpipe.common.units import MS
from tickpipe.processor import checkpoint
from tickpipe.processor.bars import BarBuilder
from tickpipe.processor.books import BOOK_COUNTERS, BookKeeper
from tickpipe.processor.holes import Holes
from tickpipe.processor.own_orders import OwnOrders
from tickpipe.processor.plausible import DEFAULT_MAX_AGE_MS, DEFAULT_MAX_AHEAD_MS, Plausibility
from tickpipe.processor.plugins import build_strategies
from tickpipe.processor.strategies import INPUTS, Strategy
from tickpipe.processor.tradeids import RecentIds, TradeIds

__all__ = ["CHECKPOINT_VERSION", "COUNTERS", "PartitionState"]

CHECKPOINT_VERSION = 3
#: Counters every partition keeps (in its checkpoint, so they survive takeovers). Frames of
#: channels read but not normalised yet are also counted per channel, as ``ignored:<channel>``.
COUNTERS = (
    "frames",  # entries processed (not counting replays)
    "strategy_errors",  # strategy hook calls that raised (the strategy is skipped for that event)
    "strategies_disabled",  # strategies disabled after TICKPIPE_STRATEGY_MAX_FAILURES errors
    "trades",  # trades emitted
    "duplicate_trades",  # trades dropped because their id was already seen
    "trade_id_gaps",  # times a symbol's trade id jumped by more than one
    "trades_backfilled",  # trades that filled a recorded gap
    "backfill_requests",  # control entries asking the ingestor for missing trades
    "holes_backfilled",  # trade-id holes filled completely
    "holes_unrecoverable",  # trade-id holes given up (the venue had no more of them)
    "late_trades",  # trades too late for a bar's revision horizon (dead-lettered)
    "bar_revisions",  # final bars revised by a late trade
    "implausible",  # trades, quotes and depth diffs dead-lettered for their time or amounts
    "watermark_repairs",  # poisoned watermarks repaired after loading a checkpoint
    "quotes",
    "duplicate_quotes",  # quotes dropped because their update id was not newer
    "book_tops",
    "gaps",  # gap records written (depth and trades)
    "markers",  # connect / disconnect / gap markers passed over
    "replies",  # request replies passed over
    "ignored",  # frames passed over (a partial depth without its stream name, serverShutdown)
    "dead_letters",
    "signals",
    "final_bars",
    "replayed",  # new entries at or before the checkpoint (a rewound group): no output
    "reprocessed",  # pending entries at or before the checkpoint, checked again by content
    "venue_bars",  # bars the venue published (Alpaca b/u/d, Binance klines)
    "tickers",  # rolling-window tickers the venue published (Binance 24h, mini, 1h/4h/1d, avg)
    "partial_depths",  # top-of-book snapshots the venue pushed (Binance depth5/10/20)
    "corrections",  # trade corrections and cancel/errors the venue reported
    "statuses",  # trading status messages
    "own_updates",  # updates of the strategies' own orders handed to them
    "own_fills",  # fills among them
    "venue_errors",  # error messages the venue sent on the data stream
    "l1_incomplete",  # level-1 updates before the view held every field of a quote or trade
    *BOOK_COUNTERS,
)


class PartitionState:
    """Everything a partition needs to resume: bars, strategies, last ids, holes, counters.

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
        max_event_ahead_ms: int = DEFAULT_MAX_AHEAD_MS,
        max_event_age_ms: int = DEFAULT_MAX_AGE_MS,
        strategy_max_failures: int = 10,
    ) -> None:
        self.partition = partition
        self.venue = venue
        self.bars = BarBuilder(
            venue,
            lateness_ns=lateness_ms * MS,
            horizon_ns=horizon_ms * MS,
            empty=empty_bars,
        )
        self.plausible = Plausibility.from_ms(max_event_ahead_ms, max_event_age_ms)
        self.strategies = list(strategies)
        #: input -> the strategies that declared it, in configuration order.
        self.routes: dict[str, list[Strategy]] = {
            kind: [s for s in self.strategies if kind in s.inputs] for kind in INPUTS
        }
        self.strategy_max_failures = strategy_max_failures
        #: strategy name -> hook calls that raised; at the maximum the strategy is disabled.
        self.strategy_failures: dict[str, int] = {}
        #: strategy name -> event time of its last timer call.
        self.strategy_timers: dict[str, int] = {}
        #: greatest event time routed to strategies: the timer's clock.
        self.strategy_clock = 0
        self.trade_ids = TradeIds()
        self.holes = Holes(venue, self.trade_ids)
        self.recent_ids = RecentIds()  # venues with non-contiguous trade ids (Alpaca)
        self.venue_bar_revisions: dict[str, int] = {}  # "symbol|interval|ts_open" -> revision
        self.last_quote_id: dict[str, int] = {}
        #: symbol -> the last level-1 values of a venue that sends only changed fields (IBKR).
        self.l1: dict[str, dict[str, str]] = {}
        self.last_entry_id = ""
        #: the strategies' own orders, positions and the last order update read.
        self.own = OwnOrders()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.books = BookKeeper(venue, counters=self.counters)
        #: True from loading a checkpoint until the first frame checked its watermark.
        self.check_watermark = False

    @classmethod
    def from_settings(
        cls, settings: Settings, partition: str, venue: str, blob: bytes | None = None
    ) -> PartitionState:
        """Build a fresh state, or one restored from ``blob``, configured by ``settings``."""
        kwargs: dict[str, Any] = {
            "lateness_ms": settings.bar_lateness_ms,
            "horizon_ms": settings.bar_revision_horizon_ms,
            "empty_bars": settings.empty_bars,
            "max_event_ahead_ms": settings.max_event_ahead_ms,
            "max_event_age_ms": settings.max_event_age_ms,
            "strategy_max_failures": settings.strategy_max_failures,
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

    def repair_watermark(self, ts_recv: int) -> str | None:
        """Repair a watermark more than the allowed lead ahead of ``ts_recv``; say what was done.

        Bars opened by events beyond that point are dropped, final bars that the poisoned
        watermark finalised too early are opened again, and strategies forget those events.
        """
        limit = ts_recv + self.plausible.ahead_ns
        before = self.bars.max_ts_event
        dropped = self.bars.repair(limit)
        if dropped is None:
            return None
        for strategy in self.strategies:
            strategy.forget_after(limit)
        self.counters["watermark_repairs"] += 1
        return (
            f"checkpoint watermark repaired: its newest event time {before} ns was "
            f"{(before - ts_recv) // MS} ms ahead of the first frame's receive time "
            f"{ts_recv} ns; now {self.bars.max_ts_event} ns, {dropped} bars beyond it dropped"
        )

    def to_bytes(self) -> bytes:
        """Serialise the state with msgpack (the checkpoint)."""
        data = {
            "partition": self.partition,
            "venue": self.venue,
            "last_entry_id": self.last_entry_id,
            "trade_ids": self.trade_ids.to_state(),
            "holes": self.holes.to_state(),
            "recent_ids": self.recent_ids.to_state(),
            "venue_bar_revisions": self.venue_bar_revisions,
            "last_quote_id": self.last_quote_id,
            "l1": self.l1,
            "bars": self.bars.to_state(),
            "strategies": {s.name: s.to_state() for s in self.strategies},
            "counters": self.counters,
            "strategy_failures": self.strategy_failures,
            "strategy_timers": self.strategy_timers,
            "strategy_clock": self.strategy_clock,
            "own": self.own.to_state(),
        }
        return checkpoint.dump(CHECKPOINT_VERSION, data)

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

        def read(data: dict[Any, Any]) -> PartitionState:
            state = cls(partition, venue, strategies, **kwargs)
            state.last_entry_id = str(data["last_entry_id"])
            if data["v"] == 1:  # before quotes and backfills: only the highest trade ids
                state.trade_ids.load_state({"last": data["last_trade_id"], "missing": {}})
            else:
                state.trade_ids.load_state(data["trade_ids"])
            state.holes.load_state(data.get("holes", {}))
            quote_ids = data.get("last_quote_id", {})
            state.last_quote_id = {str(k): int(v) for k, v in quote_ids.items()}
            l1 = data.get("l1", {})
            state.l1 = {str(k): {str(f): str(x) for f, x in v.items()} for k, v in l1.items()}
            state.recent_ids.load_state(data.get("recent_ids", {}))
            revisions = data.get("venue_bar_revisions", {})
            state.venue_bar_revisions = {str(k): int(v) for k, v in revisions.items()}
            state.bars.load_state(data["bars"])
            saved = data["strategies"]
            for strategy in state.strategies:
                if strategy.name in saved:
                    strategy.load_state(saved[strategy.name])
            state.counters.update({str(k): int(v) for k, v in data["counters"].items()})
            failures = data.get("strategy_failures", {})
            state.strategy_failures = {str(k): int(v) for k, v in failures.items()}
            timers = data.get("strategy_timers", {})
            state.strategy_timers = {str(k): int(v) for k, v in timers.items()}
            state.strategy_clock = int(data.get("strategy_clock", 0))
            state.own.load_state(data.get("own"))
            return state

        state = checkpoint.load(
            blob,
            read,
            what="checkpoint",
            versions=(1, 2, CHECKPOINT_VERSION),
            owner_key="partition",
            owner=partition,
        )
        state.check_watermark = True
        return state
