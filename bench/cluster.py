"""Start a Redis Cluster of masters on loopback ports for a benchmark, and stop it.

Each node is ``redis-server --cluster-enabled yes`` (no persistence: the benchmark measures
tickpipe, not the disk); the nodes are joined with ``redis-cli --cluster create ...
--cluster-replicas 0 --cluster-yes`` and the cluster is ready once every node reports
``cluster_state:ok``. The stages reach it through ``REDIS_URL=redis+cluster://HOST:PORT`` (one
node; the client discovers the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from bench.rig import wait_until
from tickpipe.common.procs import free_port, wait_for_redis

__all__ = ["Cluster", "cluster_ports"]

#: A cluster node also listens on its port + 10000 (the cluster bus), which must be a port too.
BUS_OFFSET = 10_000


def cluster_ports(count: int) -> list[int]:
    """Return ``count`` free loopback ports whose cluster-bus ports are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + BUS_OFFSET > 65535 or port in ports or port + BUS_OFFSET in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        ports.append(port)
    return ports


@dataclass
class Cluster:
    """The master nodes of one Redis Cluster under ``directory``."""

    directory: Path
    masters: int = 3
    ports: list[int] = field(default_factory=list)
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The ``REDIS_URL`` the stages are given (the first node)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> dict[str, int]:
        """Each node's process id, named ``redis-1``, ``redis-2``..."""
        return {f"redis-{n}": proc.pid for n, proc in enumerate(self.procs, start=1)}

    async def start(self) -> None:
        """Start the nodes, join them and wait for ``cluster_state:ok`` on each."""
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for the cluster rows")
        self.ports = cluster_ports(self.masters)
        for port in self.ports:
            node = self.directory / str(port)
            node.mkdir(parents=True)
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    server,
                    *("--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"),
                    *("--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"),
                    *("--dir", str(node), "--appendonly", "no", "--save", ""),
                    *("--logfile", "redis.log"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        for port, proc in zip(self.ports, self.procs, strict=True):
            await wait_for_redis(f"redis://127.0.0.1:{port}/0", timeout_s=15, proc=proc)
        create = await asyncio.create_subprocess_exec(
            cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{port}" for port in self.ports),
            *("--cluster-replicas", "0", "--cluster-yes"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(create.communicate(), 60)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.decode()[-400:]}")
        clients = [aioredis.Redis(port=port) for port in self.ports]

        async def ok() -> bool:
            for client in clients:
                info = await client.cluster("info")
                if info.get("cluster_state") != "ok":
                    return False
            return True

        try:
            await wait_until(ok, timeout_s=30, what="cluster_state:ok on every node", every_s=0.1)
        finally:
            for client in clients:
                await client.aclose()

    async def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
