"""A user's configuration mistake, on the real command line: one line on stderr, exit code 2.

Each case runs the command a user types (``python -m <stage>``, ``tickpipe <command>``,
``tickpipe up``) as a subprocess and checks the exit code, that stderr holds exactly one line
naming what to fix, and that no traceback is printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO
from tests.ports import free_port, free_run

pytestmark = pytest.mark.e2e

STAGES = ("ingestor", "processor", "trader", "dashboard", "mock_ws")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TICKPIPE_", "BINANCE_"))}
    env.pop("REDIS_URL", None)
    # Nothing listens here: a stage that wrongly starts waits for Redis until the timeout.
    env.update(
        PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        TICKPIPE_BINANCE_WS_URL="ws://127.0.0.1:9", TICKPIPE_DASHBOARD_PORT=str(free_port()),
    )  # fmt: skip
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 60) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )  # fmt: skip
    return result.returncode, result.stderr + result.stdout


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    assert len(lines) == 1, output
    return lines[0]


def _dotenv(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "bad.env"
    path.write_bytes(content)
    path.chmod(0o600)
    return path


DOTENV_CASES = {
    "unterminated quote": (b'TICKPIPE_SHARDS=1\nTICKPIPE_SYMBOLS="BTCUSDT\n', 2, "quote"),
    "no equals sign": (b"TICKPIPE_SHARDS=1\n\nTICKPIPE_SYMBOLS\n", 3, "no '='"),
    "not UTF-8": (b"TICKPIPE_INSTANCE=caf\xe9\n", 1, "UTF-8"),
}


# One loader serves every command: each command gets one case, two commands get every case.
DOTENV_RUNS = [
    *((["-m", f"tickpipe.{stage}"], "unterminated quote") for stage in STAGES),
    *((["-m", "tickpipe", "up"], case) for case in DOTENV_CASES),
    *((["-m", "tickpipe.ingestor"], case) for case in DOTENV_CASES if case != "unterminated quote"),
    (["-m", "tickpipe", "streams"], "no equals sign"),
]


@pytest.mark.parametrize(("command", "case"), DOTENV_RUNS)
def test_a_bad_dotenv_names_file_and_line(command: list[str], case: str, tmp_path: Path) -> None:
    content, line, fragment = DOTENV_CASES[case]
    path = _dotenv(tmp_path, content)
    code, output = _run([*command, "--env-file", str(path)], _env(), tmp_path)
    assert code == 2, output
    message = _one_line(output)
    assert f"{path}:{line}: " in message and fragment in message, message


BAD_URLS = {
    "redis://127.0.0.1:6379/abc": "database 'abc'",
    "redis://127.0.0.1:notaport/0": "port",
    "redis://127.0.0.1:65536/0": "port",
    "redis://127.0.0.1:6379/0?socket_timeout=soon": "socket_timeout",
    "redis://127.0.0.1:6379/0?retry=3": "unknown parameter 'retry'",
    "tcp://127.0.0.1:6379/0": "scheme",
}


# One URL check serves every stage: each stage gets the /abc database, the processor every URL.
URL_RUNS = [
    *((stage, "redis://127.0.0.1:6379/abc") for stage in ("ingestor", "trader", "dashboard")),
    *(("processor", url) for url in BAD_URLS),
]


@pytest.mark.parametrize(("stage", "url"), URL_RUNS)
def test_a_bad_redis_url_part_is_named(stage: str, url: str, tmp_path: Path) -> None:
    code, output = _run(["-m", f"tickpipe.{stage}"], _env(REDIS_URL=url), tmp_path)
    assert code == 2, output
    message = _one_line(output)
    assert "REDIS_URL" in message and BAD_URLS[url] in message, message


@pytest.mark.parametrize("stage", STAGES)
def test_a_secret_too_short_to_mask_is_refused(stage: str, tmp_path: Path) -> None:
    env = _env(BINANCE_API_KEY="a-long-enough-key", BINANCE_API_SECRET="abc1")
    code, output = _run(["-m", f"tickpipe.{stage}"], env, tmp_path)
    assert code == 2, output
    message = _one_line(output)
    assert "BINANCE_API_SECRET" in message and "abc1" not in message, message


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_dashboard_port_is_named(taken_port: int, tmp_path: Path) -> None:
    env = _env(TICKPIPE_DASHBOARD_PORT=str(taken_port))
    code, output = _run(["-m", "tickpipe.dashboard"], env, tmp_path)
    assert code == 2, output
    message = _one_line(output)
    assert f"TICKPIPE_DASHBOARD_PORT={taken_port}" in message and "in use" in message, message


@pytest.mark.parametrize("stage", ["ingestor", "processor", "trader", "dashboard"])
def test_a_taken_metrics_port_is_named(stage: str, taken_port: int, tmp_path: Path) -> None:
    code, output = _run(
        ["-m", f"tickpipe.{stage}"], _env(TICKPIPE_METRICS_PORT=str(taken_port)), tmp_path
    )
    assert code == 2, output
    message = _one_line(output)
    assert f"TICKPIPE_METRICS_PORT={taken_port}" in message and "in use" in message, message


def test_a_taken_mock_port_is_named(taken_port: int, tmp_path: Path) -> None:
    code, output = _run(
        ["-m", "tickpipe.mock_ws", "--binance-port", str(taken_port)], _env(), tmp_path
    )
    assert code == 2, output
    message = _one_line(output)
    assert f"--binance-port {taken_port}" in message and "in use" in message, message


UP_STAGES = ("ingestor", "processor-1", "trader", "dashboard")


@pytest.mark.parametrize("stage", UP_STAGES)
def test_up_stops_with_the_reason_when_a_stage_exits_2(stage: str, tmp_path: Path) -> None:
    base = free_run(len(UP_STAGES))
    env = _env(TICKPIPE_METRICS_PORT=str(base), TICKPIPE_DASHBOARD_PORT=str(free_port()))
    del env["REDIS_URL"], env["TICKPIPE_BINANCE_WS_URL"]  # the embedded default, with the mock
    # Stage N serves /metrics on base + N; the dashboard is tried on its own port instead.
    taken = int(env["TICKPIPE_DASHBOARD_PORT"]) if stage == "dashboard" else (
        base + UP_STAGES.index(stage)
    )  # fmt: skip
    setting = "TICKPIPE_DASHBOARD_PORT" if stage == "dashboard" else "TICKPIPE_METRICS_PORT"
    data = tmp_path / "state"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", taken))
        sock.listen()
        result = subprocess.run(
            [sys.executable, "-m", "tickpipe", "up", "--duration", "45", "--data-dir",
             str(data)],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    reason = [line for line in result.stderr.splitlines() if line.startswith("tickpipe up:")]
    assert len(reason) == 1, output
    assert f"{stage}" in reason[0] and f"{setting}={taken}" in reason[0], reason[0]
    assert "restarting" not in output, output
    log = (data / "logs" / f"{stage}.log").read_text()
    assert log.count(f"{setting}={taken}") == 1, log  # started once, never restarted
    assert not (data / "redis.url").exists()
