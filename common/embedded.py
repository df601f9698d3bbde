"""The embedded default's Redis users: their passwords, the ACL file, and finding them again.

``tickpipe up`` without ``REDIS_URL`` starts its own ``redis-server`` with the users of
``deploy/acl.py`` (one per stage plus ``operator``; ``default`` off). Under the data directory:

* ``redis.passwords`` (0600): one ``USER PASSWORD`` line per user, random at first start and
  reused on every later start (tools that logged in before still can). Never on a command line.
* ``redis/users.acl`` (0600): the ACL file redis-server loads; it holds password hashes only.
* ``redis.url`` (0600): ``redis://127.0.0.1:PORT/0`` while ``tickpipe up`` runs; no password.

Each stage gets its own user's ``REDIS_URL`` in its environment. The operator commands
(``tickpipe kill-switch|subscribe|replay|streams|tail|export``) and ``--check`` find a running
embedded default through :func:`discover_redis_url` and log in as ``operator``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tickpipe.common.errors import ConfigError
from tickpipe.common.privacy import write_private
from tickpipe.common.settings import Settings
from tickpipe.deploy.acl import OPERATOR, USERS, render_acl, stage_url

__all__ = [
    "ACL_FILE",
    "PASSWORDS_FILE",
    "URL_FILE",
    "discover_redis_url",
    "ensure_passwords",
    "read_passwords",
    "user_url",
    "write_acl",
]

PASSWORDS_FILE = "redis.passwords"
URL_FILE = "redis.url"
ACL_FILE = "redis/users.acl"

_HEADER = (
    "# tickpipe up: the embedded redis-server's users (USER PASSWORD). Keep this file private;\n"
    "# delete it to have new passwords made at the next start.\n"
)


def read_passwords(path: Path) -> dict[str, str]:
    """Read ``USER PASSWORD`` lines; a line that is not one is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(
            f"{path}: not readable by this user; run as the user who started tickpipe up, "
            "or set REDIS_URL"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a passwords file (not UTF-8); delete it") from None
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(f"{path}:{number}: write USER PASSWORD (or delete the file)")
        out[fields[0]] = fields[1]
    return out


def ensure_passwords(path: Path) -> dict[str, str]:
    """Return every user's password from ``path``, making (and saving) the missing ones."""
    passwords = read_passwords(path) if path.exists() else {}
    missing = [user for user in USERS if user not in passwords]
    if missing:
        passwords.update({user: secrets.token_urlsafe(24) for user in missing})
        lines = "".join(f"{user} {passwords[user]}\n" for user in USERS)
        write_private(path, _HEADER + lines)
    return {user: passwords[user] for user in USERS}


def write_acl(path: Path, namespace: str, passwords: dict[str, str]) -> None:
    """Write the ACL file (hashes only, 0600) for ``namespace``."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, render_acl(namespace, passwords))


def user_url(url: str, user: str, password: str) -> str:
    """Return ``url`` (``redis://host:port/db``) logging in as ``user``."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    return stage_url(user, password, parts.netloc.rpartition("@")[2], db=db)


def discover_redis_url(settings: Settings, data_dir: Path | None = None) -> str:
    """Return the URL the operator commands use: ``REDIS_URL`` when set, else a running
    embedded default's (found through ``redis.url``, as ``operator``), else the default URL."""
    if settings.redis_url_set:
        return settings.redis_url
    data_dir = Path(settings.data_dir) if data_dir is None else data_dir
    marker = data_dir / URL_FILE
    try:
        url = marker.read_text().strip()
    except FileNotFoundError:
        return settings.redis_url
    except OSError as exc:
        raise ConfigError(f"{marker}: cannot read it ({exc.strerror}); or set REDIS_URL") from None
    passwords_file = data_dir / PASSWORDS_FILE
    if not passwords_file.exists():  # started without users (an older tickpipe up)
        return url
    password = read_passwords(passwords_file).get(OPERATOR)
    if password is None:
        raise ConfigError(f"{passwords_file}: no {OPERATOR} line; restart tickpipe up")
    return user_url(url, OPERATOR, password)


def url_password(url: str) -> str | None:
    """The password inside ``url``, if any (to mask it in logs)."""
    password = urlsplit(url).password
    return unquote(password) if password else None
