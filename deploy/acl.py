"""Generate a Redis ACL file with one least-privilege user per stage, from the key namespace.

Every user may only run the commands its stage sends, on the keys its stage owns (Redis 7 ACL
selectors give a stage different commands on different key patterns):

* ``ingestor``: XADD to ``{P}:raw`` and ``{V}:private-raw``; read ``{P}:control``; its health key.
* ``processor``: consume ``raw`` / ``private-raw`` through its consumer group (no XADD there);
  XADD to trades, quotes, book, bars, signals, dead letters, order updates and control; its
  checkpoints, leases and health key.
* ``trader``: consume ``signals`` and ``order-updates``; XADD to ``{V}:orders`` and its dead
  letters; its lease, intents, positions, working orders and health key; its fenced scripts
  (every write checks the lease in the same script).
* ``processor`` and ``trader`` may also *read* (never write) any key of the namespace: the trader
  reads trades for mark prices and the private stream to notice reconnects.
* ``dashboard``: read-only on the whole namespace (``tickpipe streams`` works under it too).
* ``operator`` (the ``tickpipe`` operator commands, not a stage): reads the whole namespace, sets
  and clears the kill switch, appends control entries (subscribe / unsubscribe) and raw frames
  (``tickpipe replay``); it cannot write signals, intents, orders or positions.
* ``default``: nobody can log in as it. It gets a random password that is never written down
  (only its hash is in the file), so an anonymous connection gets ``NOAUTH`` and ``AUTH default``
  always fails. It is not switched ``off`` because Redis (7.0 to 7.4 at least) replays the AOF
  as ``default`` and re-checks the ACL at every ``EXEC``: with ``default off`` each transaction
  in the AOF (every processor commit, every trader intent: Lua scripts are logged as
  ``MULTI``/``EXEC``) is dropped at the next start without an error (redis/redis#14541).

``tickpipe up`` loads the same rules into the redis-server it starts (the embedded default), so
the embedded default, compose and a Redis Cluster all run under one set of users.

Passwords are stored as SHA-256 hashes (``#...``), so the ACL file holds no secret. Usage::

    python -m tickpipe.deploy.acl --namespace tp --out deploy/users.acl --env-dir deploy/env \\
        --redis-host redis:6379

writes ``users.acl`` and, per user, ``<user>.env`` (mode 600) holding ``REDIS_URL`` with that
user and a fresh random password, plus ``compose.env`` (``INGESTOR_REDIS_URL=``... for
``deploy/compose.acl.yml``). Start Redis with ``--aclfile users.acl``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from tickpipe.common.names import Keys
from tickpipe.common.privacy import write_private

__all__ = ["OPERATOR", "STAGE_USERS", "USERS", "acl_rules", "main", "render_acl", "stage_url"]

#: Redis users, one per stage, in the order they are written.
STAGE_USERS = ("ingestor", "processor", "trader", "dashboard", "archive")
#: The user of the operator commands (kill switch, subscribe, replay, streams, tail, export).
OPERATOR = "operator"
#: Every user the ACL file holds.
USERS = (*STAGE_USERS, OPERATOR)

#: Commands every user needs to connect, fence transactions and find cluster nodes.
_BASE = (
    "+ping +hello +auth +select +echo +quit +reset +readonly +readwrite +asking "
    "+client|setname +client|getname +client|id +command +scan "
    "+cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid "
    "+multi +exec +discard +unwatch"
)
#: Stream commands of a consumer-group reader (XREADGROUP updates the group, so it writes).
_CONSUME = (
    "+xreadgroup +xack +xautoclaim +xclaim +xpending +xgroup|create +xgroup|createconsumer "
    "+xinfo|groups +xinfo|stream +xinfo|consumers +xlen"
)
#: Commands on a stage's own plain keys (health, checkpoints, leases, intents, positions...).
_STATE = "+@string +@hash +@set +@keyspace +watch -@dangerous"
#: Commands that append to a stream the stage owns.
_APPEND = "+xadd +xtrim +xlen +xrange +xrevrange +xinfo|stream"


def _health(keys: Keys, service: str) -> str:
    return keys.health(service, "*")


def acl_rules(namespace: str = "tp") -> dict[str, str]:
    """Return each stage user's ACL rules (everything but ``on`` and the password)."""
    keys = Keys(namespace)
    ns = keys.namespace

    def p(*suffixes: str, prefix: str = "~") -> str:  # partition and venue keys alike
        return " ".join(f"{prefix}{ns}:{{*}}:{suffix}" for suffix in suffixes)

    head = f"resetkeys resetchannels -@all {_STATE} {_BASE}"
    read_all = f"(%R~{ns}:* +@read -@dangerous)"  # read-only selector over the namespace
    ingestor = (
        f"{head} ~{_health(keys, 'ingestor')} "
        # eval: the append script; reading its own raw streams back: the last trade ids at start
        # and, after a write cut off mid-way, what Redis already appended.
        f"({p('raw', 'private-raw', 'gaps')} +xadd +eval +xrange +xrevrange +xlen) "
        f"({p('control', prefix='%R~')} +xread +xrange +xrevrange +xlen +xinfo|stream)"
    )
    outputs = p(
        "trades", "quotes", "book", "bars:*", "signals", "dead-letters", "gaps",
        "order-updates", "control", "venue-bars", "trade-corrections", "venue-status", "tickers",
        "partial-depth", "balances",
    )  # fmt: skip
    processor = (
        f"{head} ~{_health(keys, 'processor')} {p('checkpoint', 'lease', 'fence:*')} "
        f"({outputs} {_APPEND}) "
        f"({p('raw', 'private-raw')} {_CONSUME}) "
        # the commit and read scripts: every key they declare must sit in the selector that
        # allows them (the read's gate declares the lease and the member's fence key)
        f"({p('checkpoint', 'lease', 'fence:*', 'raw', 'private-raw')} {outputs} +eval) "
        f"{read_all}"
    )
    fenced = p(
        "trader-lease", "intent:*", "orders", "working-orders", "positions", "signals",
        "order-updates", "trader-dead-letters",
    )  # fmt: skip
    trader = (
        f"{head} ~{_health(keys, 'trader')} "
        f"{p('intent:*', 'positions', 'working-orders')} {p('kill-switch', prefix='%R~')} "
        f"{p('trader-lease')} "  # its fenced lease, like the processor's
        f"({p('orders')} {_APPEND}) "
        f"({p('signals', 'order-updates')} {_CONSUME}) "
        # the intent script: its declared keys must sit in the selector that allows it
        f"({p('intent:*', 'orders', 'working-orders', 'positions', 'trader-lease')} "
        f"+evalsha +eval +script|load) {read_all}"
        # its dead letters, and every key its fenced scripts declare (trader/fence.py)
        f" ({p('trader-dead-letters')} {_APPEND}) ({fenced} +evalsha +eval)"
    )
    dashboard = (
        f"resetkeys resetchannels -@all +@read -@dangerous {_BASE} +xinfo +type +ttl +pttl "
        f"%R~{ns}:* "
        f"(~{_health(keys, 'dashboard')} {_STATE})"
    )
    operator = (
        f"resetkeys resetchannels -@all +@read -@dangerous {_BASE} +xinfo +type +ttl +pttl "
        f"%R~{ns}:* "
        f"({p('kill-switch')} +set +del +exists +get) "
        f"({p('control', 'raw')} +xadd)"
    )
    archived = p(
        "raw", "private-raw", "trades", "quotes", "book", "bars:*", "signals", "gaps",
        "venue-bars", "trade-corrections", "venue-status", "tickers", "partial-depth",
        "order-updates", "orders", "balances",
    )  # fmt: skip
    # The archive reads every archived stream through its own group and records its
    # watermarks (``<stream>:archived``); it appends to no stream.
    archive = f"{head} ~{_health(keys, 'archive')} {p('*:archived')} ({archived} {_CONSUME})"
    return {
        "ingestor": ingestor, "processor": processor, "trader": trader, "dashboard": dashboard,
        "archive": archive, OPERATOR: operator,
    }  # fmt: skip


def _password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl(namespace: str, passwords: Mapping[str, str]) -> str:
    """Return an ACL file (``aclfile`` format): a user per stage, ``operator``, and a ``default``
    user nobody can log in as (see the module docstring for why it is not ``off``)."""
    rules = acl_rules(namespace)
    missing = [u for u in USERS if not passwords.get(u)]
    if missing:
        raise ValueError(f"no password for user(s) {missing}")
    unknowable = _password_hash(secrets.token_urlsafe(32))  # never stored, never shown
    lines = [f"user default on #{unknowable} ~* &* +@all"]
    for user in USERS:
        lines.append(f"user {user} on #{_password_hash(passwords[user])} {rules[user]}")
    return "\n".join(lines) + "\n"


def stage_url(user: str, password: str, host: str = "127.0.0.1:6379", *, scheme: str = "redis",
              db: int = 0) -> str:  # fmt: skip
    """Return the ``REDIS_URL`` a stage uses to log in as ``user``."""
    tail = "" if scheme.endswith("+cluster") else f"/{db}"
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the ACL file (and per-stage env files with fresh passwords); return an exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m tickpipe.deploy.acl", description="Generate tickpipe's Redis ACL users."
    )
    parser.add_argument("--namespace", default=os.environ.get("TICKPIPE_NAMESPACE", "tp"))
    parser.add_argument("--out", type=Path, help="ACL file to write (default: print it)")
    parser.add_argument("--env-dir", type=Path, help="write <stage>.env with REDIS_URL here")
    parser.add_argument("--redis-host", default="redis:6379", help="host:port in REDIS_URL")
    parser.add_argument("--scheme", default="redis", choices=["redis", "rediss",
                        "redis+cluster", "rediss+cluster"])  # fmt: skip
    args = parser.parse_args(argv)
    try:
        Keys(args.namespace)
    except ValueError as exc:
        print(f"tickpipe.deploy.acl: {exc}", file=sys.stderr)
        return 2
    passwords = {user: secrets.token_urlsafe(24) for user in USERS}
    text = render_acl(args.namespace, passwords)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.env_dir is not None:
        args.env_dir.mkdir(parents=True, exist_ok=True)
        urls = {
            u: stage_url(u, pw, args.redis_host, scheme=args.scheme) for u, pw in passwords.items()
        }
        for user, url in urls.items():
            write_private(args.env_dir / f"{user}.env", f"REDIS_URL={url}\n")
        # For `docker compose --env-file` with deploy/compose.acl.yml.
        write_private(
            args.env_dir / "compose.env",
            "".join(f"{user.upper()}_REDIS_URL={urls[user]}\n" for user in STAGE_USERS),
        )
        print(f"wrote {len(passwords)} env files (mode 600) in {args.env_dir}", file=sys.stderr)
    elif args.out is not None:
        print("passwords were not saved: pass --env-dir to keep them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
