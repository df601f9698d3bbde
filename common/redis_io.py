"""Connect to Redis and translate redis-py's errors into tickpipe's, at this one boundary.

:func:`connect_redis` reads everything from the URL:

* ``redis://[user:password@]host:port/db`` plain TCP; ``unix:///path/redis.sock`` a socket;
* ``rediss://...`` TLS. Query parameters ``ssl_ca_certs`` (PEM file of the CA that signed the
  server's certificate), ``ssl_certfile`` / ``ssl_keyfile`` (client certificate, when the server
  asks for one), ``ssl_cert_reqs`` (``required``, default; ``optional``; ``none``) and
  ``ssl_check_hostname`` (``yes``/``no``);
* ``redis+cluster://host:port`` or ``rediss+cluster://`` (or ``?cluster=yes``) a Redis Cluster
  client that discovers the other nodes from this one. Every key carries a hash tag, so each
  stage's transactions stay on one slot.

User and password (Redis ACL) go in the URL's user-info part; :func:`redacted` shows a URL with
the password replaced by ``***``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.exceptions as rexc

from common.errors import ConfigError, RedisUnavailable

__all__ = [
    "REDIS_DOWN",
    "SCHEMES",
    "check_redis_url",
    "connect_redis",
    "direct_pool",
    "ensure_group",
    "is_cluster_url",
    "preflight_redis",
    "redacted",
    "redis_errors",
    "xreadgroup_streams",
]

T = TypeVar("T")

#: redis-py exceptions that mean "Redis is not reachable right now" (retry later).
REDIS_DOWN = (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, OSError)

#: URL schemes :func:`connect_redis` understands.
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

_TLS_PARAMS = {"ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
_BOOL_PARAMS = {"ssl_check_hostname", "cluster"}
_PASS_THROUGH = {"db", "socket_timeout", "socket_connect_timeout", "health_check_interval"}
_CERT_REQS = {"none", "optional", "required"}
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def redacted(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def is_cluster_url(url: str) -> bool:
    """Tell whether ``url`` asks for a Redis Cluster client."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return parts.scheme.endswith("+cluster") or query.get("cluster", "").lower() in _TRUE


def _options(url: str) -> tuple[str, dict[str, Any], bool]:
    """Split ``url`` into a plain redis-py URL, TLS keyword arguments and the cluster flag."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"REDIS_URL {redacted(url)!r}: scheme must be one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    cluster = scheme.endswith("+cluster")
    base_scheme = scheme.removesuffix("+cluster")
    kwargs: dict[str, Any] = {}
    keep: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _BOOL_PARAMS:
            if value.lower() not in _TRUE | _FALSE:
                raise ConfigError(f"REDIS_URL: {key}={value!r} must be yes or no")
            flag = value.lower() in _TRUE
            if key == "cluster":
                cluster = cluster or flag
            else:
                kwargs[key] = flag
        elif key in _TLS_PARAMS:
            if key == "ssl_cert_reqs" and value not in _CERT_REQS:
                raise ConfigError(f"REDIS_URL: ssl_cert_reqs must be one of {sorted(_CERT_REQS)}")
            kwargs[key] = value
        elif key in _PASS_THROUGH:
            keep.append((key, value))
        else:
            known = sorted(_TLS_PARAMS | _BOOL_PARAMS | _PASS_THROUGH)
            raise ConfigError(f"REDIS_URL: unknown parameter {key!r}; known: {', '.join(known)}")
    if (set(kwargs) & (_TLS_PARAMS | {"ssl_check_hostname"})) and base_scheme != "rediss":
        raise ConfigError("REDIS_URL: ssl_* parameters need the rediss:// scheme (TLS)")
    if cluster and base_scheme == "unix":
        raise ConfigError("REDIS_URL: a Redis Cluster is reached over TCP, not a unix socket")
    plain = urlunsplit(parts._replace(scheme=base_scheme, query=urlencode(keep)))
    return plain, kwargs, cluster


def direct_pool(redis: Any) -> Any:
    """Return the connection pool of a single-server redis-py client, else ``None``.

    The hot write paths send pre-encoded RESP on a connection of this pool; a cluster client
    (no single pool) goes through redis-py's commands instead.
    """
    pool = getattr(redis, "connection_pool", None)
    cls = getattr(pool, "connection_class", None)
    if isinstance(cls, type) and issubclass(cls, aioredis.connection.AbstractConnection):
        return pool
    return None


def check_redis_url(url: str) -> None:
    """Raise :class:`ConfigError` naming the problem if :func:`connect_redis` cannot use ``url``."""
    _options(url)


def connect_redis(url: str) -> aioredis.Redis:
    """Create a client (bytes in, bytes out); the first command opens the connection.

    A cluster URL gives a :class:`redis.asyncio.cluster.RedisCluster`, which offers the same
    commands, pipelines and WATCH/MULTI transactions (on keys of one slot) as a single client.
    Raises :class:`ConfigError` for a URL it cannot use.
    """
    plain, kwargs, cluster = _options(url)
    common: dict[str, Any] = {
        "decode_responses": False,
        "socket_connect_timeout": 5,
        **kwargs,
    }
    try:
        if cluster:
            client = aiocluster.RedisCluster.from_url(plain, **common)
            # A cluster client offers every command the stages use; callers type it as Redis.
            return cast(aioredis.Redis, client)
        return aioredis.Redis.from_url(plain, health_check_interval=10, **common)
    except (ValueError, TypeError, rexc.RedisClusterException) as exc:
        raise ConfigError(f"REDIS_URL {redacted(url)!r}: {exc}") from exc


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Translate a lost Redis connection into :class:`RedisUnavailable`, a refused login or
    command into :class:`ConfigError` (exit code 2: retrying cannot help)."""
    try:
        yield
    except rexc.AuthenticationError as exc:  # a ConnectionError to redis-py; not one to retry
        raise ConfigError(
            f"Redis refused the login ({exc}); check the user and password in REDIS_URL"
        ) from exc
    except rexc.NoPermissionError as exc:
        raise ConfigError(
            f"Redis ACL refused a command ({exc}); regenerate the ACL file (deploy/acl.py)"
        ) from exc
    except rexc.BusyLoadingError as exc:
        raise RedisUnavailable(f"Redis is loading its data: {exc}") from exc
    except REDIS_DOWN as exc:
        raise RedisUnavailable(f"Redis is unreachable: {exc}") from exc


async def preflight_redis(url: str) -> None:
    """Check at start that Redis accepts our login: a refused login is a ConfigError (exit 2).

    Redis being down is not an error here: the stage starts and waits for it as usual.
    """
    client = connect_redis(url)
    try:
        async with redis_errors():
            await client.ping()
    except RedisUnavailable:
        pass
    finally:
        await client.aclose()


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create a consumer group reading from the start of ``stream`` if it does not exist yet."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except rexc.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def xreadgroup_streams(
    redis: aioredis.Redis,
    group: str,
    consumer: str,
    streams: Mapping[str, str],
    *,
    count: int | None = None,
    block: int | None = None,
) -> Any:
    """XREADGROUP several streams: one command, or on a cluster one per stream.

    A cluster refuses a multi-key command across slots (CROSSSLOT), so there each stream is read
    on its own without blocking and the RESP2 replies ``[[stream, entries], ...]`` are joined;
    callers already treat a fast empty answer as "nothing yet".
    """
    if len(streams) <= 1 or not isinstance(redis, aiocluster.RedisCluster):
        return await redis.xreadgroup(group, consumer, dict(streams), count=count, block=block)  # type: ignore[arg-type]
    out: list[Any] = []
    for stream, cursor in streams.items():
        reply = await redis.xreadgroup(group, consumer, {stream: cursor}, count=count)
        out.extend(reply or [])
    return out


async def call(awaitable: Awaitable[T]) -> T:
    async with redis_errors():
        return await awaitable
