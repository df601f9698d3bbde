"""Read the ingestor's markers the processor acts on: connects and finished backfills (pure).

Markers are raw entries of kind ``marker`` whose data is a JSON object with an ``event``. Two
of them matter to the processor; every other marker is counted and passed over:

* ``connect``: a connection of the ingestor is up. Its connection id is
  ``<label>/<run token>.<attempt>``; a run token not seen before means the ingestor (re)started
  and may have missed the backfill requests written while it was away (:class:`Connect`).
* ``backfill_done`` (channel ``trades_backfill``): the ingestor finished serving a backfill
  request; the REST pages it fetched precede it in ``raw`` (:class:`BackfillDone`).

A ``backfill_done`` marker that does not have the documented shape raises :class:`DecodeError`
(a dead letter): a hole could otherwise stay open without anyone saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from common.contract import MarkerEvent
from common.errors import DecodeError
from common.schema import RawFrame

__all__ = ["BACKFILL_OUTCOMES", "BackfillDone", "Connect", "classify_marker", "run_of"]

BACKFILL_OUTCOMES = ("complete", "partial", "failed")
TRADE_STREAMS = ("trades", "aggTrades")


@dataclass(frozen=True, slots=True)
class Connect:
    """An ingestor connection came up; ``run`` names the ingestor process that made it."""

    run: str
    conn: str


@dataclass(frozen=True, slots=True)
class BackfillDone:
    """The ingestor finished a backfill of trade ids ``first_id..last_id`` (inclusive)."""

    symbol: str
    stream: str
    first_id: int
    last_id: int
    fetched: int
    outcome: str
    error: str


def run_of(conn: str) -> str:
    """Return the run token of a connection id ``<label>/<token>.<attempt>`` (else the id)."""
    tail = conn.rpartition("/")[2]
    token, dot, attempt = tail.rpartition(".")
    return token if dot and token and attempt.isdigit() else tail


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DecodeError(f"backfill_done marker field {key!r} must be a non-negative integer")
    return value


def _backfill_done(data: Mapping[str, Any]) -> BackfillDone:
    symbol, stream = data.get("symbol"), data.get("stream")
    if not isinstance(symbol, str) or not symbol:
        raise DecodeError("backfill_done marker has no symbol")
    if stream not in TRADE_STREAMS:
        raise DecodeError(f"backfill_done marker stream must be trades or aggTrades: {stream!r}")
    outcome, error = data.get("outcome"), data.get("error", "")
    if outcome not in BACKFILL_OUTCOMES:
        raise DecodeError(f"backfill_done marker outcome must be one of {BACKFILL_OUTCOMES}")
    first_id, last_id = _int(data, "first_id"), _int(data, "last_id")
    if first_id > last_id:
        raise DecodeError(f"backfill_done marker has first_id {first_id} > last_id {last_id}")
    return BackfillDone(
        symbol=symbol.upper(),
        stream=str(stream),
        first_id=first_id,
        last_id=last_id,
        fetched=_int(data, "fetched") if "fetched" in data else 0,
        outcome=str(outcome),
        error=error if isinstance(error, str) else str(error),
    )


def classify_marker(frame: RawFrame) -> Connect | BackfillDone | str:
    """Return what a marker tells the processor, or ``markers`` (the counter) for the others."""
    try:
        data = orjson.loads(frame.data)
    except orjson.JSONDecodeError:
        return "markers"  # markers are the ingestor's notes; only the two below are read
    event = data.get("event") if isinstance(data, dict) else None
    if event == MarkerEvent.CONNECT:
        conn = frame.conn or str(data.get("conn", ""))
        return Connect(run_of(conn), conn)
    if event == MarkerEvent.BACKFILL_DONE:
        return _backfill_done(data)
    return "markers"
