"""Start and stop local helper processes: a private redis-server, free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import redis.asyncio as aioredis

from tickpipe.common.errors import ConfigError
from tickpipe.common.privacy import PRIVATE_UMASK
from tickpipe.common.redis_io import REDIS_DOWN, redacted

__all__ = [
    "REDIS_INSTALL_HINT",
    "check_port",
    "free_port",
    "listen_socket",
    "start_redis_server",
    "tied_to_parent",
    "wait_for_redis",
]

REDIS_INSTALL_HINT = "install it with: sudo apt-get install -y redis-server"
#: How many ports :func:`start_redis_server` tries when it chooses the port itself.
_PORT_TRIES = 3

log = logging.getLogger("tickpipe.redis")

#: Run in the child before the real program: ask the kernel for SIGTERM when the parent dies
#: (Linux ``prctl(PR_SET_PDEATHSIG)``, option 1, kept across ``exec``), leave at once if the
#: parent is already gone, then become the program (same pid).
_TIED = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def tied_to_parent(argv: Sequence[str]) -> list[str]:
    """Return ``argv`` wrapped so that its process gets SIGTERM when this process dies.

    A supervisor starts its children in sessions of their own (a terminal's Ctrl-C reaches the
    supervisor alone, which stops them in order); should the supervisor be killed outright, its
    children would run on as orphans, holding ports, data directories and venue sessions. The
    wrapper is a short ``python -c`` that sets the parent-death signal and ``exec``s the program
    (not a ``preexec_fn``: the supervisor has threads). The signal follows the thread that
    spawns the child, so spawn from the thread that lives as long as the process (the event
    loop's). Elsewhere than Linux ``argv`` is returned as it is.
    """
    if not sys.platform.startswith("linux"):
        return list(argv)
    program = shutil.which(argv[0]) or argv[0]
    return [sys.executable, "-c", _TIED, str(os.getpid()), program, *argv[1:]]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listen_socket(host: str, port: int, label: str) -> socket.socket:
    """Bind and listen on ``host:port``; a taken port is a :class:`ConfigError` naming ``label``.

    ``label`` is what the user set, e.g. ``TICKPIPE_DASHBOARD_PORT=8050`` or ``--port 8050``.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"{label}: not a port number (0 to 65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            problem = "is already in use by another program; choose another port"
        elif exc.errno == errno.EACCES:
            problem = "is not allowed (ports below 1024 need privileges); choose another port"
        else:
            problem = f"cannot be listened on: {exc.strerror or exc}"
        raise ConfigError(f"{label}: {host}:{port} {problem}") from None
    return sock


def check_port(host: str, port: int, label: str) -> None:
    """Raise :class:`ConfigError` naming ``label`` if ``host:port`` cannot be listened on now."""
    if port:
        listen_socket(host, port, label).close()


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigError(f"redis-server was not found on PATH; {REDIS_INSTALL_HINT}")
    return binary


async def start_redis_server(
    data_dir: Path, *, port: int | None = None, appendonly: bool = True,
    aclfile: Path | None = None, login: tuple[str, str] | None = None, tied: bool = False,
) -> tuple[asyncio.subprocess.Process, str]:  # fmt: skip
    """Start ``redis-server`` on loopback with its data in ``data_dir``; return (process, url).

    With ``aclfile`` the server loads its users from that file, and ``login`` (user, password)
    is who checks that it answers. Passwords never go on the command line (``ps`` shows it to
    every user). The server runs under umask 077: its AOF, RDB and log are private. ``tied``:
    the server runs in a session of its own (a terminal's Ctrl-C does not reach it: the parent
    stops it when done) and stops (SIGTERM, its data saved) when this process dies
    (:func:`tied_to_parent`).
    """
    binary = redis_server_binary()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for attempt in range(1, _PORT_TRIES + 1):
        chosen = port or free_port()
        proc = await _spawn_redis(binary, data_dir, chosen, appendonly, aclfile, tied)
        url = f"redis://127.0.0.1:{chosen}/0"
        check = url
        if login is not None:
            user, password = (quote(part, safe="") for part in login)
            check = f"redis://{user}:{password}@127.0.0.1:{chosen}/0"
        try:
            await wait_for_redis(check, timeout_s=15, proc=proc)
        except ConfigError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            # A port found free can be taken before the server binds it (another program
            # starting at the same moment): the server exits at once. Choose another.
            if port or attempt == _PORT_TRIES or proc.returncode is None:
                raise
            log.warning("redis-server exited at start on port %d (taken?); trying another", chosen)
            continue
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        return proc, url
    raise AssertionError("unreachable")  # the last attempt returns or raises


async def _spawn_redis(
    binary: str, data_dir: Path, port: int, appendonly: bool, aclfile: Path | None, tied: bool
) -> asyncio.subprocess.Process:
    args = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir.resolve()),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--daemonize", "no",
        "--logfile", "redis.log",
    ]  # fmt: skip
    if aclfile is not None:
        args += ["--aclfile", str(aclfile.resolve())]
    # The umask is set around the spawn rather than passed as ``umask=``: uvloop's loop (the
    # benchmarks run under it) refuses that argument. The child inherits it at fork.
    old_umask = os.umask(PRIVATE_UMASK)
    try:
        return await asyncio.create_subprocess_exec(
            *(tied_to_parent(args) if tied else args),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=tied,  # a terminal's Ctrl-C reaches the parent, which stops it
        )
    finally:
        os.umask(old_umask)


async def wait_for_redis(
    url: str, *, timeout_s: float = 15.0, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Wait until Redis at ``url`` answers PING (and has finished loading its data)."""
    deadline = time.monotonic() + timeout_s
    # Bounded per PING: a port taken by a program that never answers must not hang the wait.
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        while True:
            if proc is not None and proc.returncode is not None:
                raise ConfigError(f"redis-server exited with code {proc.returncode} at start")
            try:
                if await client.ping():
                    return
            except REDIS_DOWN:
                pass
            except Exception as exc:  # LOADING and friends: keep waiting
                if "loading" not in str(exc).lower():
                    raise
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"Redis at {redacted(url)} did not answer within {timeout_s:.0f} s"
                )
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
