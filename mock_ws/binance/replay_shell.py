"""Serve a recorded session as the live venue: frames at recorded pace, REST depth to match.

Replaces the simulated trade and depth loops. Each recorded frame goes to the connections
subscribed to its stream (raw or combined, as clients ask) with its recorded payload; the pace
is the recording's receive times divided by ``speed`` (0 = as fast as possible). The first
recorded snapshot of each symbol seeds its
:class:`~mock_ws.binance.replay.ReplayBook` before the first
frame; each replayed diff is applied as it is sent, so ``GET /api/v3/depth`` is consistent with
the diff stream at the replay position. Replayed trades join the REST trade history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from mock_ws.binance.connection import Record
from mock_ws.binance.feed import MarketFeed
from mock_ws.binance.replay import ReplayBook, ReplayEvent, Snapshot
from mock_ws.ground_truth import GroundTruthWriter, trade_record
from mock_ws.market import SimTrade

__all__ = ["Replayer", "replay_symbols"]


class _Host(Protocol):
    feed: MarketFeed
    ground_truth: GroundTruthWriter
    clock: Callable[[], int]

    def publish(self, stream: str, payload: Any, record: Record) -> None: ...


def replay_symbols(events: list[ReplayEvent]) -> list[str]:
    """Return the symbols of a recording, in order of first appearance."""
    seen: dict[str, None] = {}
    for event in events:
        name = event.stream.partition("@")[0]
        if not name.startswith("!"):
            seen[name.upper()] = None
    return list(seen)


class Replayer:
    """Replay recorded frames through a running mock; see the module docstring."""

    def __init__(
        self, events: list[ReplayEvent], snapshots: list[Snapshot], *, speed: float = 1.0
    ) -> None:
        self.events = events
        self.speed = speed
        self.books = {s: ReplayBook(s) for s in replay_symbols(events)}
        for snap in reversed(snapshots):  # the first snapshot of each symbol wins
            if snap.symbol in self.books:
                self.books[snap.symbol].apply_snapshot(snap.body)
        self.sent = 0
        self.done = False

    def depth(self, symbol: str, limit: int) -> dict[str, Any]:
        """Return the REST depth snapshot at the replay position."""
        return self.books[symbol].snapshot(limit)

    async def run(self, host: _Host) -> None:
        """Send every recorded frame at its pace; log start and end in the ground truth."""
        host.ground_truth.write("replay", ts=host.clock(), state="start", frames=len(self.events))
        first_ns = self.events[0].t_ns
        started_ns = host.clock()
        for index, event in enumerate(self.events):
            if self.speed > 0:
                due_ns = started_ns + (event.t_ns - first_ns) / self.speed
                delay_s = (due_ns - host.clock()) / 1e9
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
            elif index % 500 == 0:
                await asyncio.sleep(0)
            self._apply(host, event)
            self.sent += 1
        self.done = True
        host.ground_truth.write("replay", ts=host.clock(), state="done", frames=self.sent)

    def _apply(self, host: _Host, event: ReplayEvent) -> None:
        payload = event.payload
        record: Record = None
        kind = payload.get("e") if isinstance(payload, dict) else None
        if kind == "depthUpdate" and payload["s"] in self.books:
            self.books[payload["s"]].apply_diff(payload)
        elif kind == "trade":
            trade = SimTrade(
                payload["s"], payload["t"], payload["p"], payload["q"], payload["T"], payload["m"]
            )
            host.feed.add_history(trade)
            record = trade_record(event.stream, trade)
        host.publish(event.stream, payload, record)
