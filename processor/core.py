"""Turn a partition's raw frames into trades, bars, signals and dead letters (pure, no I/O).

:func:`process_batch` is the whole processing step of one partition: it folds a batch of raw
entries into :class:`PartitionState` and returns what to write. The outputs are a pure function of
the raw entries; ``ts_now`` only fills the ``ts_proc`` / ``ts_signal`` stamps. The state is small
and round-trips through msgpack (:meth:`PartitionState.to_bytes`), so a member that takes a
partition over resumes exactly where the checkpoint left off, and splitting the same entries into
batches differently gives the same trades, signals and final bars (partial bars are views of the
forming candle, one per touched bar per batch).

Entries at or before the checkpoint's last entry id are acknowledged without output (replays).
Markers, request replies and market-data channels not handled yet (depth, bookTicker, REST
snapshots) are passed over and counted; a frame that cannot be parsed or fails validation becomes
a :class:`DeadLetter`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgpack

from common import binance
from common.errors import DecodeError
from common.schema import Bar, RawFrame, Signal, Trade
from common.settings import Settings
from processor.bars import BarBuilder
from processor.strategies import Strategy, ThresholdCross

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
]

CHECKPOINT_VERSION = 1

#: Counters every partition keeps (in its checkpoint, so they survive takeovers).
COUNTERS = (
    "frames",  # entries processed (not counting replays)
    "trades",  # trades emitted
    "duplicate_trades",  # trades dropped because their id was already seen
    "trade_id_gaps",  # times a symbol's trade id jumped by more than one
    "markers",  # connect / disconnect / gap markers passed over
    "replies",  # request replies passed over
    "ignored",  # frames of channels not handled yet
    "dead_letters",
    "signals",
    "final_bars",
    "replayed",  # entries at or before the checkpoint, acknowledged without output
)

_VENUE_PARSERS = {"binance"}


def entry_key(entry_id: str) -> tuple[int, int]:
    """Return a stream entry id ``ms-seq`` as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class BadEntry:
    """A stream entry that is not a valid :class:`RawFrame` (malformed or deleted)."""

    reason: str
    data: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry that could not be processed, with the reason and the raw data."""

    entry_id: str
    reason: str
    data: str

    def to_fields(self) -> dict[str, str]:
        """Return the stream fields: ``reason``, ``entry_id``, ``data``."""
        return {"reason": self.reason, "entry_id": self.entry_id, "data": self.data}


@dataclass
class BatchOutput:
    """What one batch produced; ``acked`` lists every input entry id, in order."""

    trades: list[Trade] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    frames: int = 0


def build_strategies(settings: Settings) -> list[Strategy]:
    """Return the strategies configured in ``settings``."""
    return [
        ThresholdCross(
            dict(settings.thresholds),
            hysteresis_bps=settings.hysteresis_bps,
            order_qty=settings.order_qty,
        )
    ]


class PartitionState:
    """Everything a partition needs to resume: open bars, strategies, last ids, counters."""

    def __init__(self, partition: str, venue: str, strategies: Iterable[Strategy] = ()) -> None:
        self.partition = partition
        self.venue = venue
        self.bars = BarBuilder(venue)
        self.strategies = list(strategies)
        self.last_trade_id: dict[str, int] = {}
        self.last_entry_id = ""
        self.counters = dict.fromkeys(COUNTERS, 0)

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
            "last_trade_id": self.last_trade_id,
            "bars": self.bars.to_state(),
            "strategies": {s.name: s.to_state() for s in self.strategies},
            "counters": self.counters,
        }
        out: bytes = msgpack.packb(data, use_bin_type=True)
        return out

    @classmethod
    def from_bytes(
        cls, blob: bytes, partition: str, venue: str, strategies: Iterable[Strategy] = ()
    ) -> PartitionState:
        """Rebuild a state saved by :meth:`to_bytes`; strategies get their saved state back."""
        try:
            data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
            if not isinstance(data, dict) or data.get("v") != CHECKPOINT_VERSION:
                raise DecodeError("checkpoint has an unknown version")
            if data["partition"] != partition:
                raise DecodeError(f"checkpoint belongs to {data['partition']!r}, not {partition!r}")
            state = cls(partition, venue, strategies)
            state.last_entry_id = str(data["last_entry_id"])
            state.last_trade_id = {str(k): int(v) for k, v in data["last_trade_id"].items()}
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


def is_reply(obj: Any) -> bool:
    """Tell whether a decoded frame is a reply to a request (``{"id":..,"result"|"error":..}``)."""
    return isinstance(obj, Mapping) and "id" in obj and "e" not in obj


def _parse_trade(entry_id: str, frame: RawFrame, stream: str | None, payload: Any) -> Trade:
    """Parse and validate one trade payload; raise :class:`DecodeError` with the reason."""
    try:
        trade = binance.parse_trade(payload, ts_recv=frame.ts_recv, src=entry_id)
        _ = (Decimal(trade.price), Decimal(trade.qty), int(trade.trade_id))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise DecodeError(f"trade is invalid: {exc!r}") from exc
    if stream is not None and stream.partition("@")[0] != trade.symbol.lower():
        raise DecodeError(f"trade of {trade.symbol} arrived on stream {stream}")
    return trade


def _classify(entry_id: str, frame: RawFrame) -> Trade | str:
    """Return the trade a frame holds, or the counter name under which it is passed over."""
    if frame.kind == "marker":
        return "markers"
    if frame.venue not in _VENUE_PARSERS:
        raise DecodeError(f"no parser for venue {frame.venue!r}")
    if frame.kind == "rest":
        return "ignored"  # depth snapshots and trade backfills: handled in a later version
    if frame.kind != "ws":
        raise DecodeError(f"unknown raw frame kind {frame.kind!r}")
    stream, payload = binance.unwrap(frame.data)
    if stream is not None:
        if stream.endswith("@trade"):
            return _parse_trade(entry_id, frame, stream, payload)
        return "ignored"
    if is_reply(payload):
        return "replies"
    if isinstance(payload, Mapping) and payload.get("e") == "trade":
        return _parse_trade(entry_id, frame, None, payload)
    if isinstance(payload, Mapping) and ("e" in payload or "lastUpdateId" in payload):
        return "ignored"
    raise DecodeError("unrecognised frame: neither a stream event nor a reply")


def process_batch(
    state: PartitionState,
    entries: Sequence[tuple[str, RawFrame | BadEntry]],
    ts_now: int,
) -> BatchOutput:
    """Fold ``entries`` (in stream order) into ``state``; return the outputs to write."""
    out = BatchOutput()
    counters = state.counters
    last_key = entry_key(state.last_entry_id) if state.last_entry_id else (-1, -1)
    for entry_id, frame in entries:
        out.acked.append(entry_id)
        key = entry_key(entry_id)
        if key <= last_key:
            counters["replayed"] += 1
            continue
        last_key = key
        state.last_entry_id = entry_id
        counters["frames"] += 1
        out.frames += 1
        if isinstance(frame, BadEntry):
            out.dead_letters.append(DeadLetter(entry_id, frame.reason, frame.data))
            continue
        try:
            result = _classify(entry_id, frame)
        except DecodeError as exc:
            out.dead_letters.append(DeadLetter(entry_id, str(exc), frame.data))
            continue
        if isinstance(result, str):
            counters[result] += 1
            continue
        _on_trade(state, out, dataclasses.replace(result, ts_proc=ts_now), ts_now)
    out.bars.extend(state.bars.flush())
    counters["dead_letters"] += len(out.dead_letters)
    return out


def _on_trade(state: PartitionState, out: BatchOutput, trade: Trade, ts_now: int) -> None:
    counters = state.counters
    trade_id = int(trade.trade_id)
    last = state.last_trade_id.get(trade.symbol)
    if last is not None and trade_id <= last:
        counters["duplicate_trades"] += 1
        return
    if last is not None and trade_id > last + 1:
        counters["trade_id_gaps"] += 1
    state.last_trade_id[trade.symbol] = trade_id
    out.trades.append(trade)
    counters["trades"] += 1
    finals = state.bars.on_trade(trade)
    out.bars.extend(finals)
    counters["final_bars"] += len(finals)
    for strategy in state.strategies:
        for n, spec in enumerate(strategy.on_trade(trade, ts_now)):
            signal_id = f"{state.partition}|{trade.src}|{strategy.name}"
            out.signals.append(
                Signal(
                    signal_id=signal_id if n == 0 else f"{signal_id}|{n}",
                    venue=trade.venue,
                    symbol=spec.symbol,
                    strategy=strategy.name,
                    action=spec.action,
                    side=spec.side,
                    qty=spec.qty,
                    price=spec.price,
                    reason=spec.reason,
                    cause=trade.src,
                    ts_event=trade.ts_event,
                    ts_recv=trade.ts_recv,
                    ts_signal=ts_now,
                )
            )
            counters["signals"] += 1
