"""Key names: namespace, hash tags, stable sharding."""

from __future__ import annotations

import pytest

from tickpipe.common.names import Keys, Partition, partitions_for, shard_for


def test_partition_keys_carry_the_cluster_hash_tag() -> None:
    keys = Keys("tp")
    p = Partition("binance", 0)
    assert keys.raw(p) == "tp:{binance:0}:raw"
    assert keys.bars(p, "1m") == "tp:{binance:0}:bars:1m"
    for name in (keys.trades(p), keys.signals(p), keys.checkpoint(p), keys.lease(p)):
        assert "{binance:0}" in name
    assert keys.orders("binance") == "tp:{binance}:orders"


def test_namespace_is_validated_and_unknown_interval_rejected() -> None:
    with pytest.raises(ValueError, match="namespace"):
        Keys("has space")
    with pytest.raises(ValueError, match="unknown bar interval"):
        Keys().bars(Partition("binance", 0), "7s")


def test_shard_is_stable_and_in_range() -> None:
    # crc32 is stable across processes and Python versions (unlike hash()).
    assert shard_for("BTCUSDT", 4) == shard_for("btcusdt", 4)
    assert {shard_for(f"SYM{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    assert shard_for("BTCUSDT", 1) == 0


def test_partitions_for_groups_symbols() -> None:
    parts = partitions_for("binance", ["A", "B", "C"], 1)
    assert parts == {Partition("binance", 0): ["A", "B", "C"]}
    assert Partition.parse("binance:3") == Partition("binance", 3)
    with pytest.raises(ValueError):
        Partition.parse("binance")
