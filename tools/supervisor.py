"""Run the whole pipeline locally: redis-server, mock exchange and every stage as processes.

``tickpipe up`` starts a private ``redis-server`` under ``.tickpipe/`` when ``REDIS_URL`` is unset
(the embedded default: one ACL user per stage plus ``operator``, no anonymous access, passwords
kept in the data directory; see :mod:`common.embedded`), the mock exchange when no venue URL is
configured, then the ingestor, processor member(s) and trader of every venue (``TICKPIPE_VENUES``:
one set per venue, named after it and pinned to it) and the dashboard, each logged in as its own
user. Everything runs under umask 077 and the data directory is checked at start: what is open to
other users is made private, with a warning. With ``TICKPIPE_METRICS_PORT`` set, stage N serves
``/metrics`` on that port plus N. A stage that crashes is restarted with backoff; a stage that
exits with code 2 (bad configuration) is never restarted: everything stops and its own message is
printed. A status line per stage shows what moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tickpipe.common.backoff import Backoff
from tickpipe.common.embedded import (
    ACL_FILE,
    PASSWORDS_FILE,
    URL_FILE,
    ensure_passwords,
    user_url,
    write_acl,
)
from tickpipe.common.errors import ConfigError
from tickpipe.common.extras import has_extra
from tickpipe.common.privacy import PRIVATE_UMASK, make_private, write_private
from tickpipe.common.procs import start_redis_server, tied_to_parent, wait_for_redis
from tickpipe.common.redis_io import REDIS_ERRORS, connect_redis, redacted, redis_reason
from tickpipe.common.settings import Settings, read_dotenv
from tickpipe.common.status import StatusSnapshot, read_status, render_status
from tickpipe.common.stopping import wait_stop
from tickpipe.deploy.acl import OPERATOR
from tickpipe.tools.demo import ROUND_S, demo_scenarios, demo_settings
from tickpipe.venues.registry import venue

__all__ = ["StageSpec", "Supervisor", "UpOptions", "config_error_in", "run_up"]

log = logging.getLogger("tickpipe.up")

EXIT_CONFIG = 2


@dataclass
class UpOptions:
    """What ``tickpipe up`` starts and for how long."""

    duration_s: float | None = None
    processors: int = 1
    mock: bool | None = None  # None: start the mock when no venue URL is configured
    mock_rate: float = 20.0
    mock_seed: int = 1
    #: serve the mock over TLS (wss://, https://) with a generated CA, as the venues do
    mock_tls: bool = True
    #: the mock's log of every frame it sent (grows with the run: off unless asked for)
    ground_truth: Path | None = None
    #: on the mock: scheduled market moves and the strategies that trade them (tools.demo)
    demo: bool = True
    dashboard: bool = True
    status_interval_s: float = 1.0
    data_dir: Path = Path(".tickpipe")
    env_file: str = ".env"


@dataclass
class StageSpec:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: the embedded Redis user it logs in as
    user: str = ""
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=10.0))
    started_at: float = 0.0


class Supervisor:
    """Keep a set of stage processes running until stopped."""

    def __init__(self, stages: list[StageSpec], log_dir: Path) -> None:
        self.stages = stages
        self.log_dir = log_dir
        self.fatal: str | None = None
        self.stopping = False

    async def start(self, stage: StageSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{stage.name}.log", "ab") as logfile:
            stage.proc = await asyncio.create_subprocess_exec(
                *tied_to_parent(stage.argv), env=stage.env, stdout=logfile, stderr=logfile,
                start_new_session=True,
            )  # fmt: skip
        stage.started_at = time.monotonic()
        log.info("started %s", stage.name, extra={"pid": stage.proc.pid})

    async def watch(self, stage: StageSpec, stop: asyncio.Event) -> None:
        """Restart ``stage`` whenever it exits, until ``stop`` is set."""
        while not stop.is_set():
            await self.start(stage)
            assert stage.proc is not None
            code = await stage.proc.wait()
            stage.exit_codes.append(code)
            if stop.is_set() or self.stopping:
                return
            if code == EXIT_CONFIG:  # the user's to fix: restarting cannot help
                logfile = self.log_dir / f"{stage.name}.log"
                self.fatal = f"{stage.name}: {config_error_in(logfile)} (log: {logfile})"
                stop.set()
                return
            stage.backoff.connection_ended(time.monotonic() - stage.started_at)
            delay = stage.backoff.next_delay_s()
            stage.restarts += 1
            log.warning("%s exited with code %s; restarting in %.1f s", stage.name, code, delay)
            await wait_stop(stop, delay)

    async def terminate(self, grace_s: float = 10.0) -> None:
        """SIGTERM every stage, wait up to ``grace_s``, then SIGKILL what is left."""
        self.stopping = True
        running = [s.proc for s in self.stages if s.proc and s.proc.returncode is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace_s)
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in running))


def config_error_in(logfile: Path) -> str:
    """Return the last configuration error a stage wrote to ``logfile`` (plain or JSON line)."""
    try:
        with open(logfile, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if "configuration error" not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        text = str(record.get("msg", "")) if isinstance(record, dict) else line
        if "configuration error" in text:
            return text[text.index("configuration error") :]
    return "configuration error (no message in its log)"


def _stage_env(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _demo_extra(options: UpOptions, env: dict[str, str], out: TextIO) -> dict[str, str]:
    """Print the demo's plan; return its settings for what the user left unset."""
    dotenv = Path(options.env_file)
    given = {**(read_dotenv(dotenv) if dotenv.is_file() else {}), **env}
    extra, notes = demo_settings(given)
    moves = demo_scenarios(options.mock_seed)
    first = ", ".join(f"{m['name']} {m['pct']:g} % at +{m['at']:g} s" for m in moves[:2])
    shown = " ".join(f"{k}={v}" for k, v in extra.items()) or "none (all set by you)"
    print(
        f"demo: market moves on the mock every {ROUND_S:g} s ({first}, ...); settings added: "
        f"{shown} (--no-demo: none of it)",
        file=out,
    )
    for note in notes:
        log.warning("demo: %s", note)
        print(f"demo: {note}", file=out)
    return extra


async def _start_mock(
    options: UpOptions, settings: Settings, env: dict[str, str], log_dir: Path
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    ready = options.data_dir / "mock.ready.json"
    ready.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "tickpipe.mock_ws",
        "--binance-port", "0",
        "--seed", str(options.mock_seed),
        "--rate", str(options.mock_rate),
        "--ready-file", str(ready),
        "--env-file", options.env_file,
    ]  # fmt: skip
    if options.ground_truth is not None:
        argv += ["--ground-truth", str(options.ground_truth)]
    if options.demo:
        argv += ["--scenario", json.dumps(demo_scenarios(options.mock_seed))]
    if options.mock_tls:
        argv += ["--tls", "--tls-dir", str(options.data_dir / "mock-tls")]
    for name in settings.all_venues():  # a Binance market always runs beside the others
        argv += venue(name).mock_args(settings.for_venue(name))
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "mock_ws.log", "ab") as logfile:
        proc = await asyncio.create_subprocess_exec(
            *tied_to_parent(argv), env=env, stdout=logfile, stderr=logfile,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 15
    while not ready.exists():
        if proc.returncode is not None or time.monotonic() > deadline:
            mock_log = log_dir / "mock_ws.log"
            if proc.returncode == EXIT_CONFIG:
                reason = config_error_in(mock_log)
            elif proc.returncode is not None:
                reason = f"it exited with code {proc.returncode}"
            else:
                reason = "it did not report its ports within 15 s"
            raise ConfigError(f"the mock exchange did not start: {reason} (log: {mock_log})")
        await asyncio.sleep(0.05)
    return proc, dict(json.loads(ready.read_text()))


def _secure_url(value: str) -> str:
    """``ws://``/``http://`` -> ``wss://``/``https://``; any other value unchanged."""
    for plain, secure in (("ws://", "wss://"), ("http://", "https://")):
        if value.startswith(plain):
            return secure + value[len(plain) :]
    return value


async def _mock_extra(
    options: UpOptions,
    settings: Settings,
    env: dict[str, str],
    extra: dict[str, str],
    log_dir: Path,
    helpers: list[asyncio.subprocess.Process],
    out: TextIO,
) -> dict[str, str]:
    """Start the mock exchange with a throwaway key; return the settings pointing at it.

    The primary venue's key, when set, is the mock's (every venue the mock serves accepts it).
    """
    mock_env = dict(extra)
    key, secret = venue(settings.venue).credentials(settings)
    if key and secret:
        mock_env.update(BINANCE_API_KEY=key.reveal(), BINANCE_API_SECRET=secret.reveal())
    else:
        mock_env.update(
            BINANCE_API_KEY="mock-" + secrets.token_hex(16),
            BINANCE_API_SECRET=secrets.token_hex(32),
        )
    proc, ports = await _start_mock(options, settings, _stage_env(env, mock_env), log_dir)
    helpers.append(proc)
    ca_file = ports.get("ca_file")
    urls: dict[str, str] = {}
    shown = []
    for name in settings.all_venues():
        found = venue(name).mock_env(
            ports, mock_env["BINANCE_API_KEY"], mock_env["BINANCE_API_SECRET"], env
        )
        if ca_file:  # the mock serves every venue over TLS: same addresses, secure schemes
            found = {k: _secure_url(v) for k, v in found.items()}
        urls.update(found)
        scheme = "wss" if ca_file else "ws"
        shown.append(f"{name} {scheme}://127.0.0.1:{ports.get(f'{name}_port')}")
    if ca_file:  # the stages trust the mock's CA on top of the system store
        urls["TICKPIPE_CA_FILE"] = str(ca_file)
        shown.append(f"CA file {ca_file}")
    print(f"mock exchange: {', '.join(shown)} (seed {options.mock_seed})", file=out)
    return urls


def _open_to_others(path: Path) -> bool:
    try:
        return bool(path.lstat().st_mode & 0o077)
    except FileNotFoundError:
        return False


def _spec(name: str, stage: str, env: dict[str, str] | None = None) -> StageSpec:
    """A stage's process: ``python -m <stage>``, logged in as the stage's own Redis user."""
    return StageSpec(name, [sys.executable, "-m", f"tickpipe.{stage}"], env or {}, user=stage)


def _venue_env(settings: Settings) -> dict[str, str]:
    """The settings that pin a stage process to one venue of the deployment."""
    thresholds = ",".join(f"{s}={level}" for s, level in settings.thresholds)
    return {
        "TICKPIPE_VENUE": settings.venue,
        "TICKPIPE_VENUES": settings.venue,
        "TICKPIPE_SYMBOLS": ",".join(settings.symbols),
        "TICKPIPE_THRESHOLDS": thresholds,
    }


def _venue_stages(settings: Settings, options: UpOptions) -> list[StageSpec]:
    """An ingestor, the processor members and a trader per venue (named after it if several)."""
    names = settings.all_venues()
    stages = []
    for name in names:
        one = settings.for_venue(name)
        env = _venue_env(one) if len(names) > 1 else {}
        tag = f"-{name}" if len(names) > 1 else ""
        stages.append(_spec(f"ingestor{tag}", "ingestor", dict(env)))
        stages += [
            _spec(f"processor{tag}-{n + 1}", "processor", dict(env))
            for n in range(options.processors)
        ]
        stages.append(_spec(f"trader{tag}", "trader", dict(env)))
        if settings.archive:  # the venue's streams to Parquet, its own consumer group
            stages.append(_spec(f"archive{tag}", "archive", dict(env)))
    return stages


async def _start_embedded_redis(
    settings: Settings, data_dir: Path, out: TextIO, *, exposed: bool
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Start redis-server with a user per stage and the operator; return (process, their URLs).

    ``exposed``: the passwords file was readable by other users, so new passwords are made (the
    data does not depend on them: the AOF holds no login).
    """
    if exposed:
        try:
            (data_dir / PASSWORDS_FILE).unlink()
        except OSError as exc:
            raise ConfigError(f"{data_dir / PASSWORDS_FILE}: cannot replace it: {exc}") from None
        log.warning("%s was open to other users: made new passwords", data_dir / PASSWORDS_FILE)
        print("redis-server: the old passwords may have been read: new ones made", file=out)
    passwords = ensure_passwords(data_dir / PASSWORDS_FILE)
    aclfile = data_dir / ACL_FILE
    write_acl(aclfile, settings.namespace, passwords)
    proc, url = await start_redis_server(
        data_dir / "redis", aclfile=aclfile, login=(OPERATOR, passwords[OPERATOR]), tied=True
    )
    write_private(data_dir / URL_FILE, url + "\n")
    print(
        f"redis-server: {url} (a user per stage, no anonymous access; passwords in "
        f"{data_dir / PASSWORDS_FILE}; data in {data_dir / 'redis'})",
        file=out,
    )
    return proc, {user: user_url(url, user, pw) for user, pw in passwords.items()}


async def run_up(
    settings: Settings,
    options: UpOptions,
    stop: asyncio.Event,
    *,
    out: TextIO | None = None,
    on_status: Callable[[StatusSnapshot], None] | None = None,
) -> int:
    """Bring the pipeline up and keep it up until ``stop`` or ``options.duration_s``."""
    old_umask = os.umask(PRIVATE_UMASK)  # for this process and every process it starts
    try:
        return await _run_up(settings, options, stop, out or sys.stdout, on_status)
    finally:
        os.umask(old_umask)


async def _run_up(
    settings: Settings,
    options: UpOptions,
    stop: asyncio.Event,
    out: TextIO,
    on_status: Callable[[StatusSnapshot], None] | None,
) -> int:
    data_dir = options.data_dir
    log_dir = data_dir / "logs"
    env = dict(os.environ)
    helpers: list[asyncio.subprocess.Process] = []
    redis_url = settings.redis_url
    user_urls: dict[str, str] = {}
    exposed = _open_to_others(data_dir / PASSWORDS_FILE)
    try:
        fixed = make_private(data_dir)
    except OSError as exc:
        raise ConfigError(f"data directory {data_dir}: {exc.strerror or exc}") from None
    for warning in fixed:
        log.warning(warning)
    if fixed:
        print(f"data directory: made {len(fixed)} path(s) private (see the warnings)", file=out)
    try:
        if not settings.redis_url_set:
            redis_proc, user_urls = await _start_embedded_redis(
                settings, data_dir, out, exposed=exposed
            )
            helpers.append(redis_proc)
            redis_url = user_urls[OPERATOR]  # what the status lines read with
        else:
            await wait_for_redis(redis_url, timeout_s=10)
        extra = {"TICKPIPE_NAMESPACE": settings.namespace, "TICKPIPE_DATA_DIR": str(data_dir)}
        start_mock = options.mock
        if start_mock is None:
            start_mock = not any(
                k in env for name in settings.all_venues() for k in venue(name).endpoint_keys
            )
        if start_mock:
            extra.update(await _mock_extra(options, settings, env, extra, log_dir, helpers, out))
            if options.demo:
                extra.update(_demo_extra(options, env, out))
        stages = _venue_stages(settings, options)
        if options.dashboard and not has_extra("dashboard"):
            print("dashboard: not started (pip install 'tickpipe[dashboard]')", file=out)
        elif options.dashboard:
            stages.append(_spec("dashboard", "dashboard"))
        for n, stage in enumerate(stages):
            stage.argv += ["--env-file", options.env_file]
            own = {
                **extra,
                **stage.env,
                "REDIS_URL": user_urls.get(stage.user, redis_url),
                "TICKPIPE_INSTANCE": f"up-{stage.name}",
            }
            if settings.metrics_port:
                own["TICKPIPE_METRICS_PORT"] = str(settings.metrics_port + n)
                print(f"metrics: {stage.name} http://127.0.0.1:{settings.metrics_port + n}/metrics",
                      file=out)  # fmt: skip
            stage.env = _stage_env(env, own)
        if options.dashboard and has_extra("dashboard"):
            token = "?token=..." if settings.dashboard_token else ""
            print(f"dashboard: http://127.0.0.1:{settings.dashboard_port}/{token}", file=out)
        print(f"logs: {log_dir}/  (Ctrl-C stops everything)", file=out)
        supervisor = Supervisor(stages, log_dir)
        watchers = [asyncio.create_task(supervisor.watch(s, stop)) for s in stages]
        status_task = asyncio.create_task(
            _status_loop(settings, redis_url, supervisor, options, stop, out, on_status)
        )
        if options.duration_s is not None:
            asyncio.get_running_loop().call_later(options.duration_s, stop.set)
        await stop.wait()
        status_task.cancel()
        await asyncio.gather(status_task, return_exceptions=True)
        await _print_final_status(settings, redis_url, supervisor, out)
        await supervisor.terminate()
        await asyncio.gather(*watchers, return_exceptions=True)
        if supervisor.fatal:
            print(f"tickpipe up: {supervisor.fatal}", file=sys.stderr)
            return EXIT_CONFIG
        return 0
    finally:
        if not settings.redis_url_set:
            (data_dir / URL_FILE).unlink(missing_ok=True)
        for proc in reversed(helpers):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def _print_final_status(
    settings: Settings, redis_url: str, supervisor: Supervisor, out: TextIO
) -> None:
    redis = connect_redis(redis_url)
    try:
        snapshot = await read_status(redis, settings)
    except REDIS_ERRORS as exc:  # unreachable, BUSY, LOADING...: no status to show
        print(f"final status: Redis did not answer: {redis_reason(exc)}", file=out)
        return
    finally:
        await redis.aclose()
    lines = render_status(snapshot, {s.name: s.restarts for s in supervisor.stages})
    out.write("final status:\n" + "\n".join(lines) + "\n")
    out.flush()


async def _status_loop(
    settings: Settings,
    redis_url: str,
    supervisor: Supervisor,
    options: UpOptions,
    stop: asyncio.Event,
    out: TextIO,
    on_status: Callable[[StatusSnapshot], None] | None,
) -> None:
    redis = connect_redis(redis_url)
    tty = out.isatty()
    last_lines = 0
    last_print = 0.0
    try:
        while not stop.is_set():
            try:
                snapshot = await read_status(redis, settings)
            except REDIS_ERRORS as exc:  # the status loop outlives every Redis error
                lines = [f"Redis at {redacted(redis_url)} did not answer: {redis_reason(exc)}"]
            else:
                restarts: dict[str, Any] = {s.name: s.restarts for s in supervisor.stages}
                lines = render_status(snapshot, restarts)
                if on_status:
                    on_status(snapshot)
            if tty:
                if last_lines:
                    out.write(f"\x1b[{last_lines}F\x1b[J")
                out.write("\n".join(lines) + "\n")
                last_lines = len(lines)
            elif time.monotonic() - last_print >= 5 * options.status_interval_s:
                out.write("\n".join(lines) + "\n")
                last_print = time.monotonic()
            out.flush()
            await wait_stop(stop, options.status_interval_s)
    finally:
        await redis.aclose()
