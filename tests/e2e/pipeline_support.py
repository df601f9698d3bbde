"""Helpers of the end-to-end pipeline tests: run to orders, read streams, check trades once."""

from __future__ import annotations

from collections import Counter

import redis

from tests.e2e.conftest import Processes, Stage, drain_and_stop, wait_for
from tickpipe.common.names import Keys, Partition
from tickpipe.common.schema import Signal, Trade, decode_fields
from tickpipe.common.units import client_order_id_for

__all__ = ["entries", "placed_ids", "run_to_orders", "trades_once"]


def entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """Return every entry of ``stream`` as (id, decoded fields)."""
    return [(i.decode(), decode_fields(f)) for i, f in client.xrange(stream)]


def run_to_orders(
    processes: Processes,
    client: redis.Redis,
    keys: Keys,
    partition: Partition,
    stages: tuple[Stage, Stage, Stage],
    *,
    trades: int,
) -> None:
    """Wait for ``trades`` trades, two signals and two order updates; then drain and stop.

    The stages' logs are printed when a wait runs out.
    """
    venue = partition.venue
    try:
        wait_for(lambda: client.xlen(keys.trades(partition)) >= trades, timeout_s=40,
                 what=f"{trades} trades in the trades stream")  # fmt: skip
        wait_for(lambda: client.xlen(keys.signals(partition)) >= 2, timeout_s=40,
                 what="two signals")  # fmt: skip
        wait_for(lambda: client.xlen(keys.order_updates(venue)) >= 2, timeout_s=30,
                 what=f"order updates of {venue}")  # fmt: skip
        # Stop the input, then let the processor and the trader drain what is buffered.
        drain_and_stop(client, keys, partition, stages)
    except AssertionError:
        print(processes.dump_logs())
        raise


def trades_once(client: redis.Redis, keys: Keys, partition: Partition) -> list[Trade]:
    """Return the trades stream, asserting that no (symbol, trade id) stands in it twice."""
    trades = [Trade.from_fields(f) for _, f in entries(client, keys.trades(partition))]
    seen = Counter((t.symbol, int(t.trade_id)) for t in trades)
    assert [k for k, n in seen.items() if n > 1] == []
    return trades


def placed_ids(client: redis.Redis, keys: Keys, partition: Partition) -> set[str]:
    """Return the client order ids the place signals of ``partition`` should have made."""
    signals = [Signal.from_fields(f) for _, f in entries(client, keys.signals(partition))]
    return {client_order_id_for(s.signal_id) for s in signals if s.action == "place"}
