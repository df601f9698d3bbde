"""``rediss://`` against a real redis-server with TLS, a self-signed CA and an ACL password."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.exceptions as rexc

from tests.e2e.conftest import REPO, free_port, stop_process, wait_for
from tickpipe.common.errors import ConfigError
from tickpipe.common.health import HealthReporter, read_health
from tickpipe.common.names import Keys
from tickpipe.common.redis_io import connect_redis
from tickpipe.common.settings import load_settings

pytestmark = pytest.mark.e2e

PASSWORD = "tls-Pa55word-9q"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(d: Path) -> None:
    """Write a CA (ca.crt) and a server certificate for 127.0.0.1 signed by it."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=tickpipe-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
             cwd=d)  # fmt: skip
    # A second CA that did not sign the server's certificate.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=other-ca", "-keyout", "other.key", "-out", "other.crt", cwd=d)  # fmt: skip


@contextlib.contextmanager
def _tls_redis(d: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    assert binary and shutil.which("openssl"), "redis-server and openssl are needed"
    _make_certs(d)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(d / "server.crt"), "--tls-key-file", str(d / "server.key"),
         "--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--dir", str(d), "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        stop_process(proc)


def test_rediss_url_with_ca_connects_and_runs_commands(tmp_path: Path) -> None:
    d = tmp_path / "tls"
    with _tls_redis(d) as port:
        base = f"rediss://default:{quote(PASSWORD)}@127.0.0.1:{port}/0"
        url = f"{base}?ssl_ca_certs={d / 'ca.crt'}"
        # Settings accept the URL and mask the password in every log line.
        settings = load_settings({"REDIS_URL": url, "TICKPIPE_NAMESPACE": "tls"}, dotenv_path=None)
        assert PASSWORD in settings.secrets()

        async def ping(u: str) -> bool:
            client = connect_redis(u)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()

        wait_for(lambda: _quiet(ping, url), timeout_s=15, what="redis-server with TLS")

        async def round_trip() -> list[dict[str, object]]:
            client = connect_redis(url)
            try:
                keys = Keys("tls")
                await client.xadd("tls:{binance:0}:raw", {"k": "v"})
                assert await client.xlen("tls:{binance:0}:raw") == 1
                reporter = HealthReporter(client, keys, "processor", "p1")
                reporter.status = "ok"
                await reporter.publish()
                return await read_health(client, keys, "processor")
            finally:
                await client.aclose()

        records = asyncio.run(round_trip())
        assert [r["status"] for r in records] == ["ok"]
        # A stage process reads the same URL from its environment (`--check` reads health).
        env = {**os.environ, "REDIS_URL": url, "TICKPIPE_NAMESPACE": "tls", "PYTHONPATH": str(REPO)}
        env = {k: v for k, v in env.items() if not k.startswith("BINANCE_")}
        check = subprocess.run(
            [sys.executable, "-m", "tickpipe.processor", "--check",
             "--env-file", str(d / "none.env")],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        assert "p1: ok" in check.stdout and PASSWORD not in check.stdout + check.stderr
        # A CA that did not sign the server's certificate is refused ...
        with pytest.raises(rexc.ConnectionError, match="certificate"):
            asyncio.run(ping(f"{base}?ssl_ca_certs={d / 'other.crt'}"))
        # ... and so is a wrong password.
        wrong = url.replace(quote(PASSWORD), "nope")
        with pytest.raises(rexc.AuthenticationError):
            asyncio.run(ping(wrong))


def test_tls_parameters_need_the_rediss_scheme() -> None:
    with pytest.raises(ConfigError, match="rediss://"):
        connect_redis("redis://127.0.0.1:6379/0?ssl_ca_certs=/tmp/ca.crt")


def _quiet(fn, url: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(asyncio.run(fn(url)))
    except (rexc.ConnectionError, OSError):
        return False
