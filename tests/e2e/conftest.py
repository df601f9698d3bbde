"""Real processes for end-to-end tests: a redis-server, the mock exchange, each stage."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.ports import free_port
from tests.waits import wait_for
from tickpipe.common.names import GROUP_PROCESSOR, GROUP_TRADER, Keys, Partition

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RedisServer:
    url: str
    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes]

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def start_redis(data_dir: Path, port: int | None = None) -> RedisServer:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: ./dev test installs it"
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
         "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, data_dir, proc)
    client = server.client()

    def up() -> bool:
        with contextlib.suppress(
            redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError
        ):
            return bool(client.ping())
        return False

    wait_for(up, timeout_s=15, what="redis-server to answer PING")
    client.close()
    return server


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """Terminate ``proc``; kill it when it has not exited within ``timeout_s``."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout_s)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def post_to_mock(port: int, path: str, body: object, timeout_s: float = 10) -> None:
    """POST ``body`` as JSON to the running mock's ``/_mock/<path>`` (``faults``, ``scenario``)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_mock/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        assert answer.status == 200, answer.read()


def mock_binance_env(port: int) -> dict[str, str]:
    """Return the settings that point a stage at the mock's Binance venue on ``port``."""
    return {
        "TICKPIPE_BINANCE_WS_URL": f"ws://127.0.0.1:{port}",
        "TICKPIPE_BINANCE_WS_API_URL": f"ws://127.0.0.1:{port}/ws-api/v3",
        "TICKPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{port}",
    }


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    stop_process(server.proc)


@dataclass
class Stage:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout_s} s") from None

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    tmp: Path
    env: dict[str, str]
    stages: list[Stage] = field(default_factory=list)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Stage:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                env={**self.env, **(env or {})}, cwd=self.tmp,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stage = Stage(name, proc, log)
        self.stages.append(stage)
        return stage

    def start_mock(self, *args: str) -> tuple[Stage, int]:
        ready = self.tmp / "mock.ready.json"
        stage = self.start(
            "mock_ws",
            "-m",
            "tickpipe.mock_ws",
            "--binance-port",
            "0",
            "--ready-file",
            str(ready),
            *args,
        )
        wait_for(lambda: ready.exists() or stage.proc.poll() is not None, timeout_s=15,
                 what="the mock exchange to listen")  # fmt: skip
        assert stage.proc.poll() is None, stage.tail()
        return stage, int(json.loads(ready.read_text())["binance_port"])

    def start_venue_mock(self, venue: str, *args: str) -> int:
        """Start the mock with ``venue``'s listener open too (``--<venue>-port 0``, ``args``
        added); return that listener's port."""
        self.start_mock(f"--{venue}-port", "0", *args)
        return int(json.loads((self.tmp / "mock.ready.json").read_text())[f"{venue}_port"])

    def point_stages(
        self, redis_url: str, namespace: str, venue: str, symbols: Sequence[str], **env: str
    ) -> None:
        """Point the stages at Redis and ``namespace``, trading ``symbols`` on ``venue`` with a
        signal on every 1 bp cross; ``env`` adds to that or overrides it."""
        self.env.update(
            {
                "REDIS_URL": redis_url,
                "TICKPIPE_NAMESPACE": namespace,
                "TICKPIPE_VENUE": venue,
                "TICKPIPE_SYMBOLS": ",".join(symbols),
                "TICKPIPE_HYSTERESIS_BPS": "1",
            }
            | env
        )

    def dump_logs(self) -> str:
        return "\n".join(f"--- {s.name} (exit {s.proc.poll()})\n{s.tail()}" for s in self.stages)

    def start_binance_pipeline(
        self, redis_url: str, namespace: str, symbols: tuple[str, ...], *mock_args: str
    ) -> tuple[Stage, Stage, Stage]:
        """Start the mock (Binance, ``mock_args`` added) and the three stages wired to it."""
        _, port = self.start_mock("--symbols", ",".join(symbols), *mock_args)
        self.point_stages(
            redis_url,
            namespace,
            "binance",
            symbols,
            **mock_binance_env(port),
            TICKPIPE_ORDER_QTY="0.01",
        )
        return self.start_pipeline()

    def start_pipeline(self) -> tuple[Stage, Stage, Stage]:
        """Start the ingestor, processor and trader (instances ``ing``, ``proc``, ``trd``)."""
        return (
            self.start("ingestor", "-m", "tickpipe.ingestor", env={"TICKPIPE_INSTANCE": "ing"}),
            self.start("processor", "-m", "tickpipe.processor", env={"TICKPIPE_INSTANCE": "proc"}),
            self.start("trader", "-m", "tickpipe.trader", env={"TICKPIPE_INSTANCE": "trd"}),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def group_idle(client: redis.Redis, stream: str, group: str) -> bool:
    """Tell whether ``group`` has read and acknowledged everything in ``stream`` (or it is gone)."""
    if not client.exists(stream):
        return True
    last = _text(client.xinfo_stream(stream)["last-generated-id"])
    for g in client.xinfo_groups(stream):
        if _text(g["name"]) == group:
            return int(g["pending"]) == 0 and _text(g["last-delivered-id"]) == last
    return False


def drain(client: redis.Redis, keys: Keys, partition: Partition, ingestor: Stage) -> None:
    """Stop the ingestor; wait until the processor and trader handled what is buffered."""
    assert ingestor.stop() == 0, ingestor.tail()
    for stream, group, what in (
        (keys.raw(partition), GROUP_PROCESSOR, "the processor to drain raw"),
        (keys.private_raw(partition.venue), GROUP_PROCESSOR, "the processor to drain private raw"),
        (keys.signals(partition), GROUP_TRADER, "the trader to handle every signal"),
    ):
        wait_for(lambda s=stream, g=group: group_idle(client, s, g), timeout_s=30, what=what)


def drain_and_stop(
    client: redis.Redis,
    keys: Keys,
    partition: Partition,
    stages: tuple[Stage, Stage, Stage],
) -> None:
    """Stop the ingestor, let the processor and trader handle what is buffered, stop them."""
    ingestor, processor, trader = stages
    drain(client, keys, partition, ingestor)
    assert processor.stop() == 0, processor.tail()
    assert trader.stop() == 0, trader.tail()


@pytest.fixture
def processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    procs = Processes(tmp_path, env)
    yield procs
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(procs.dump_logs())
    for stage in procs.stages:
        if stage.proc.poll() is None:
            stage.proc.kill()
            stage.proc.wait()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
