"""Build every Redis key and stream name tickpipe uses; nothing else spells one.

A partition is ``venue:shard``. Every key of a partition carries the Redis Cluster hash tag
``{venue:shard}`` and every venue-wide key the tag ``{venue}``, so multi-key commands on one
partition (MULTI, Lua) stay legal on Redis Cluster. The namespace prefix lets several deployments
and every test share one server.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ARCHIVED_KINDS",
    "BAR_INTERVALS",
    "EXPORT_KINDS",
    "GROUP_ARCHIVE",
    "GROUP_PROCESSOR",
    "GROUP_TRADER",
    "Keys",
    "Partition",
    "archive_watermark",
    "partitions_for",
    "shard_for",
]

GROUP_PROCESSOR = "processor"
GROUP_TRADER = "trader"
GROUP_ARCHIVE = "archive"

#: Retention kinds of the streams the archive stage copies to Parquet (``raw`` and every
#: normalised stream). With the archive on, these are trimmed only past what it has archived.
ARCHIVED_KINDS = frozenset({
    "raw", "trades", "quotes", "book", "bars", "signals", "gaps", "venue-bars",
    "trade-corrections", "venue-status", "tickers", "partial-depth", "private-raw",
    "order-updates", "orders", "balances",
})  # fmt: skip

#: Bar intervals the processor builds, name -> length in nanoseconds.
BAR_INTERVALS: dict[str, int] = {"1s": 1_000_000_000, "1m": 60_000_000_000}

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True, order=True)
class Partition:
    """One ordered slice of a venue's symbols: ``venue:shard``."""

    venue: str
    shard: int

    def __str__(self) -> str:
        return f"{self.venue}:{self.shard}"

    @classmethod
    def parse(cls, text: str) -> Partition:
        venue, _, shard = text.rpartition(":")
        if not venue or not shard.isdigit():
            raise ValueError(f"partition must look like 'venue:shard', got {text!r}")
        return cls(venue, int(shard))


def shard_for(symbol: str, shards: int) -> int:
    """Map a symbol to its shard by a hash that is stable across processes and versions."""
    return zlib.crc32(symbol.upper().encode()) % shards


def partitions_for(venue: str, symbols: Iterable[str], shards: int) -> dict[Partition, list[str]]:
    """Group symbols by partition, keeping the caller's symbol order inside each partition."""
    out: dict[Partition, list[str]] = {}
    for symbol in symbols:
        out.setdefault(Partition(venue, shard_for(symbol, shards)), []).append(symbol)
    return dict(sorted(out.items()))


def archive_watermark(stream: str) -> str:
    """Name the key holding the last entry id of ``stream`` the archive has written to Parquet.

    It extends the stream's own name, so it shares the stream's hash tag (and node).
    """
    return f"{stream}:archived"


class Keys:
    """Names of every stream and key under one namespace."""

    def __init__(self, namespace: str = "tp") -> None:
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(f"namespace must match {_NAMESPACE_RE.pattern}, got {namespace!r}")
        self.namespace = namespace

    def _p(self, partition: Partition, suffix: str) -> str:
        return f"{self.namespace}:{{{partition}}}:{suffix}"

    def _v(self, venue: str, suffix: str) -> str:
        return f"{self.namespace}:{{{venue}}}:{suffix}"

    # -- partition streams ---------------------------------------------------------------------
    def raw(self, partition: Partition) -> str:
        return self._p(partition, "raw")

    def trades(self, partition: Partition) -> str:
        return self._p(partition, "trades")

    def quotes(self, partition: Partition) -> str:
        return self._p(partition, "quotes")

    def book(self, partition: Partition) -> str:
        return self._p(partition, "book")

    def bars(self, partition: Partition, interval: str) -> str:
        if interval not in BAR_INTERVALS:
            raise ValueError(f"unknown bar interval {interval!r}; known: {sorted(BAR_INTERVALS)}")
        return self._p(partition, f"bars:{interval}")

    def signals(self, partition: Partition) -> str:
        return self._p(partition, "signals")

    def control(self, partition: Partition) -> str:
        return self._p(partition, "control")

    def dead_letters(self, partition: Partition) -> str:
        return self._p(partition, "dead-letters")

    def gaps(self, partition: Partition) -> str:
        return self._p(partition, "gaps")

    def venue_bars(self, partition: Partition) -> str:
        """Bars the venue itself publishes (Alpaca ``b``/``u``/``d``), not tickpipe's own."""
        return self._p(partition, "venue-bars")

    def tickers(self, partition: Partition) -> str:
        """Rolling-window tickers the venue publishes (Binance ``24hrTicker``, mini, 1h/4h/1d)."""
        return self._p(partition, "tickers")

    def partial_depth(self, partition: Partition) -> str:
        """The venue's own top-of-book snapshots (Binance ``depth5/10/20``), apart from the book
        that diffs maintain (``book``)."""
        return self._p(partition, "partial-depth")

    def trade_corrections(self, partition: Partition) -> str:
        """Trade corrections and cancel/errors the venue reported (Alpaca ``c``/``x``)."""
        return self._p(partition, "trade-corrections")

    def venue_status(self, partition: Partition) -> str:
        """Trading status messages of the venue (Alpaca ``s``: halts, resumes)."""
        return self._p(partition, "venue-status")

    # -- partition state -----------------------------------------------------------------------
    def checkpoint(self, partition: Partition) -> str:
        return self._p(partition, "checkpoint")

    def lease(self, partition: Partition) -> str:
        return self._p(partition, "lease")

    def read_fence(self, partition: Partition, instance: str) -> str:
        """A processor member's own short-lived key that aborts its read when the lease is gone."""
        return self._p(partition, f"fence:{instance}")

    def trader_signals_lease(self, partition: Partition) -> str:
        """The trader's lease on a partition's signals: fences its acknowledgements there."""
        return self._p(partition, "trader-lease")

    # -- venue streams and state ---------------------------------------------------------------
    def private_raw(self, venue: str) -> str:
        return self._v(venue, "private-raw")

    def order_updates(self, venue: str) -> str:
        return self._v(venue, "order-updates")

    def balances(self, venue: str) -> str:
        """The account's balances as the venue reported them (positions and balance updates)."""
        return self._v(venue, "balances")

    def orders(self, venue: str) -> str:
        return self._v(venue, "orders")

    def positions(self, venue: str) -> str:
        return self._v(venue, "positions")

    def venue_dead_letters(self, venue: str) -> str:
        return self._v(venue, "dead-letters")

    def venue_checkpoint(self, venue: str) -> str:
        return self._v(venue, "checkpoint")

    def venue_lease(self, venue: str) -> str:
        return self._v(venue, "lease")

    def venue_read_fence(self, venue: str, instance: str) -> str:
        """The private lane's :meth:`read_fence`."""
        return self._v(venue, f"fence:{instance}")

    def trader_lease(self, venue: str) -> str:
        """The lease of the one trader that owns the venue account (``SET NX PX``, renewed)."""
        return self._v(venue, "trader-lease")

    def trader_dead_letters(self, venue: str) -> str:
        """Signals the trader refused as inconsistent (an intent that differs), with the reason."""
        return self._v(venue, "trader-dead-letters")

    def intent(self, venue: str, client_order_id: str) -> str:
        return self._v(venue, f"intent:{client_order_id}")

    def working_orders(self, venue: str) -> str:
        """Set of the client order ids whose order may still be open at the venue."""
        return self._v(venue, "working-orders")

    def kill_switch(self, venue: str) -> str:
        """While this key exists the trader sends no order and cancels every working one."""
        return self._v(venue, "kill-switch")

    # -- operations ----------------------------------------------------------------------------
    def health(self, service: str, instance: str) -> str:
        return f"{self.namespace}:health:{service}:{instance}"

    def health_pattern(self, service: str = "*") -> str:
        return f"{self.namespace}:health:{service}:*"

    def pattern(self) -> str:
        """Match every key of this namespace (for ``SCAN``)."""
        return f"{self.namespace}:*"


#: ``tickpipe export`` kinds (read by :func:`tickpipe.tools.frames.read_kind`).
EXPORT_KINDS = (
    "trades", "quotes", *(f"bars{i}" for i in BAR_INTERVALS), "book", "signals", "gaps",
    "orders", "positions", "raw", "tickers", "balances", "venue-bars", "partial-depth",
)  # fmt: skip
