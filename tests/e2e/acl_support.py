"""Start a redis-server with tickpipe's ACL users, for the ACL and secrets end-to-end tests."""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.e2e.conftest import free_port, stop_process, wait_for
from tickpipe.deploy.acl import USERS, render_acl, stage_url

ADMIN_PASSWORD = "admin-Adm1nPass-Q7"


@dataclass
class AclRedis:
    port: int
    passwords: dict[str, str]
    proc: subprocess.Popen[bytes]
    data_dir: Path

    def url(self, user: str) -> str:
        return stage_url(user, self.passwords[user], f"127.0.0.1:{self.port}")

    def client(self, user: str = "admin") -> redis.Redis:
        password = ADMIN_PASSWORD if user == "admin" else self.passwords[user]
        return redis.Redis(port=self.port, username=user, password=password)


@contextlib.contextmanager
def acl_redis(data_dir: Path, namespace: str, passwords: dict[str, str]) -> Iterator[AclRedis]:
    """Run redis-server with the generated ACL file plus an ``admin`` user for the test."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: ./dev test installs it"
    data_dir.mkdir(parents=True, exist_ok=True)
    acl = render_acl(namespace, passwords) + f"user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"
    (data_dir / "users.acl").write_text(acl)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir),
         "--aclfile", str(data_dir / "users.acl"), "--appendonly", "yes", "--save", "",
         "--logfile", "redis.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = AclRedis(port, passwords, proc, data_dir)
    client = server.client()

    def up() -> bool:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            return bool(client.ping())
        return False

    try:
        wait_for(up, timeout_s=15, what="redis-server with ACLs to answer PING")
        client.close()
        yield server
    finally:
        stop_process(proc)


def stage_passwords(tag: str = "") -> dict[str, str]:
    """Return a distinct, recognisable password per user (every stage's and the operator's)."""
    return {user: f"pw-{user}-{tag}Zq9x7Lm2" for user in USERS}


def forms(secret: str) -> set[str]:
    """Return ``secret`` and its plausible encodings (hex, base64, url-safe base64)."""
    raw = secret.encode()
    out = {secret, raw.hex(), raw.hex().upper()}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        out.add(enc(raw).decode().rstrip("="))
    return out


def dump_redis(client: redis.Redis) -> list[bytes]:
    """Return every key name and every value in the server (streams entry by entry)."""
    out: list[bytes] = []
    for key in client.scan_iter(count=500):
        out.append(key)
        kind = client.type(key).decode()
        if kind == "stream":
            for entry_id, fields in client.xrange(key):
                out.append(entry_id)
                out.extend(b for kv in fields.items() for b in kv)
        elif kind == "string":
            out.append(client.get(key) or b"")
        elif kind == "hash":
            out.extend(b for kv in client.hgetall(key).items() for b in kv)
        elif kind == "list":
            out.extend(client.lrange(key, 0, -1))
        elif kind in ("set", "zset"):
            members = client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
            out.extend(members)
    return out
