"""The whole pipeline, unchanged, on a three-master Redis Cluster on loopback ports.

Three ``redis-server --cluster-enabled yes`` nodes are joined with ``redis-cli --cluster create``;
every stage gets ``REDIS_URL=redis+cluster://`` pointing at one node and discovers the rest. Two
shards put the partitions ``binance:0`` and ``binance:1`` on different nodes (the venue-wide
``{binance}`` keys share a node with one of them), so the pipeline spans nodes while each stage's
transactions stay on one slot, and the trader reads its two signal streams one slot at a time.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from tests.e2e.conftest import Processes, free_port, wait_for
from tickpipe.common.names import Keys, Partition
from tickpipe.common.redis_io import connect_redis, is_cluster_url

pytestmark = pytest.mark.e2e

NS = "clu"
KEYS = Keys(NS)
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@contextlib.contextmanager
def redis_cluster(d: Path, masters: int = 3) -> Iterator[list[int]]:
    """Start ``masters`` cluster nodes on free loopback ports and join them; yield the ports."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    assert server and cli, "redis-server and redis-cli are needed"
    ports = _cluster_ports(masters)
    procs = []
    try:
        for port in ports:
            node = d / str(port)
            node.mkdir(parents=True)
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                 "--dir", str(node), "--appendonly", "yes", "--save", "",
                 "--logfile", "redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for port in ports:
            client = redis.Redis(port=port)
            wait_for(lambda c=client: _pings(c), timeout_s=15, what=f"cluster node {port}")
            client.close()
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def ready() -> bool:
            for port in ports:
                info = redis.Redis(port=port).cluster("info")
                if info.get("cluster_state") != "ok":
                    return False
            return True

        wait_for(ready, timeout_s=20, what="cluster_state:ok on every node")
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cluster_ports(count: int) -> list[int]:
    """Return free ports whose cluster-bus port (port + 10000) is free and valid too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port > 50000 or port in ports or (port + 10000) in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _traded_partitions(client: RedisCluster, partitions: list[Partition]) -> int:
    """Count the partitions with a signal that has an ``intent`` in the orders stream."""
    intents = {
        fields.get(b"signal_id", b"").decode()
        for _, fields in client.xrange(KEYS.orders("binance"))
        if fields.get(b"event") == b"intent"
    }
    signals = {
        p: {fields[b"signal_id"].decode() for _, fields in client.xrange(KEYS.signals(p))}
        for p in partitions
    }
    return sum(bool(signals[p] & intents) for p in partitions)


def _pings(client: redis.Redis) -> bool:
    with contextlib.suppress(redis.exceptions.ConnectionError):
        return bool(client.ping())
    return False


def test_pipeline_runs_on_a_three_master_cluster(processes: Processes, tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster") as ports:
        url = f"redis+cluster://127.0.0.1:{ports[0]}"
        assert is_cluster_url(url)
        client = RedisCluster(host="127.0.0.1", port=ports[1])
        partitions = [Partition("binance", 0), Partition("binance", 1)]
        # The two partitions' tags hash to slots on different nodes.
        nodes = {client.get_node_from_key(KEYS.raw(p)).port for p in partitions}
        assert len(nodes) == 2, nodes

        processes.env.update(
            BINANCE_API_KEY="clu-key-1", BINANCE_API_SECRET="clu-secret", TICKPIPE_SHARDS="2"
        )
        stages = processes.start_binance_pipeline(url, NS, SYMBOLS, "--seed", "3", "--rate", "60")
        try:
            for p in partitions:
                wait_for(lambda p=p: client.xlen(KEYS.trades(p)) >= 50, timeout_s=40,
                         what=f"trades of {p} on the cluster")  # fmt: skip
                wait_for(lambda p=p: client.xlen(KEYS.bars(p, "1s")) >= 1, timeout_s=20,
                         what=f"1 s bars of {p}")  # fmt: skip
            wait_for(lambda: client.xlen(KEYS.orders("binance")) >= 2, timeout_s=40,
                     what="orders recorded on the cluster")  # fmt: skip
            wait_for(lambda: client.xlen(KEYS.order_updates("binance")) >= 1, timeout_s=30,
                     what="order updates on the cluster")  # fmt: skip
            # Signals of both partitions became orders.
            wait_for(lambda: all(client.xlen(KEYS.signals(p)) for p in partitions), timeout_s=40,
                     what="signals in both partitions")  # fmt: skip
            wait_for(lambda: _traded_partitions(client, partitions) == 2, timeout_s=40,
                     what="orders for signals of both partitions")  # fmt: skip
            check = processes.start("processor-check", "-m", "tickpipe.processor", "--check")
            assert check.proc.wait(30) == 0, check.tail()
            # `tickpipe streams` finds the streams of every node.
            streams = processes.start(
                "streams", "-c", "import sys; from tools.cli import main; sys.exit(main())",
                "streams",
            )  # fmt: skip
            assert streams.proc.wait(30) == 0, streams.tail()
            listing = streams.log.read_text()
            for p in partitions:
                assert KEYS.trades(p) in listing, listing
            for stage in stages:
                assert stage.stop() == 0, stage.tail()
        except AssertionError:
            print(processes.dump_logs())
            raise
        for stage in stages:
            text = stage.log.read_text()
            assert "CROSSSLOT" not in text and "MOVED" not in text, stage.tail()
        client.close()


def test_cluster_url_gives_a_cluster_client() -> None:
    import asyncio

    from redis.asyncio.cluster import RedisCluster as AsyncCluster

    async def make() -> object:
        return connect_redis("redis+cluster://127.0.0.1:7000")

    assert isinstance(asyncio.run(make()), AsyncCluster)
    assert is_cluster_url("redis://127.0.0.1:7000?cluster=yes")
    assert not is_cluster_url("redis://127.0.0.1:7000/0")
