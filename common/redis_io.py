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
the password replaced by ``***``. :func:`check_redis_url` checks every part (scheme, host, port
1-65535, the ``/db`` number, each query parameter and its value, no parameter twice) and raises
:class:`ConfigError` naming the part, so a typo never falls back to a default silently.

Pre-encoded commands on held connections, and the choice between a script and its
``WATCH``/``MULTI`` form, go through the one seam :mod:`common.redis_link`.

Which errors mean "wait and retry" is decided here, once. Redis is *down* for a stage
(:func:`is_redis_down`) when it cannot be reached (connection lost, timeout), and also when the
server refuses a command for now with one of :data:`REFUSAL_CODES` (``OOM`` at ``maxmemory``,
``BUSY`` script, ``LOADING``, ``MISCONF`` persistence failing, ``READONLY`` replica,
``MASTERDOWN``, ``TRYAGAIN``, ``CLUSTERDOWN``) or the cluster client loses its topology
(:class:`redis.exceptions.RedisClusterException` and its subclasses). Such a refusal is
back-pressure, never a failure: the caller keeps what it holds and tries again.
:func:`redis_errors` turns all of these into :class:`RedisUnavailable` whose message is the
server's own text (:func:`redis_reason`); a refused login or a command the ACL refuses is a
:class:`ConfigError` instead, since retrying cannot help.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
import redis.exceptions as rexc
from redis._parsers.base import BaseParser

from common.errors import ConfigError, RedisUnavailable

__all__ = [
    "REDIS_DOWN",
    "REDIS_ERRORS",
    "REFUSAL_CODES",
    "SCHEMES",
    "check_redis_url",
    "connect_redis",
    "ensure_group",
    "is_cluster_url",
    "is_redis_down",
    "preflight_redis",
    "redacted",
    "redis_condition",
    "redis_errors",
    "redis_reason",
    "refusal_error",
    "unavailable_line",
    "xreadgroup_streams",
]

#: Error codes with which a server refuses a command for now: it may succeed later.
REFUSAL_CODES = frozenset(
    ("OOM", "BUSY", "LOADING", "MISCONF", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
)

#: Exceptions that mean "Redis cannot take this right now" (wait, then retry): unreachable, a
#: refusal redis-py gives a type of its own (OOM, READONLY, TRYAGAIN, LOADING, CLUSTERDOWN,
#: MASTERDOWN), or a cluster client that lost its topology (RedisClusterUnreachableError,
#: SlotNotCoveredError and the rest of RedisClusterException). ``BUSY`` and ``MISCONF`` have no
#: type of their own: :func:`is_redis_down` recognises them by their code.
REDIS_DOWN = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    ConnectionError,
    OSError,
    rexc.OutOfMemoryError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.ClusterError,
    rexc.RedisClusterException,
    RedisUnavailable,
)
#: Every error a Redis call may raise: catch these, then ask :func:`is_redis_down`.
REDIS_ERRORS = (*REDIS_DOWN, rexc.RedisError)
_ANNOTATION = " of pipeline caused error: "
_AUTH_ERRORS = (rexc.AuthenticationError, rexc.AuthorizationError)

#: URL schemes :func:`connect_redis` understands.
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

_TLS_PARAMS = {"ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"}
_BOOL_PARAMS = {"ssl_check_hostname", "cluster"}
_PASS_THROUGH = {"db", "socket_timeout", "socket_connect_timeout", "health_check_interval"}
_CERT_REQS = {"none", "optional", "required"}
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
#: A host name or an IP address (IPv6 without its brackets, maybe with a %zone).
_HOST = re.compile(r"[A-Za-z0-9._%:-]+")


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


def _fail(problem: str) -> ConfigError:
    return ConfigError(f"REDIS_URL: {problem}")


def _number(key: str, value: str, *, minimum: float, integer: bool = False) -> float:
    """Parse a query parameter's number, or raise naming the parameter."""
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        number = float("nan")
    if not number >= minimum or number == float("inf"):
        kind = "whole number" if integer else "number"
        raise _fail(f"{key}={value!r} must be a {kind} >= {minimum:g}")
    return number


def _check_address(parts: SplitResult, base_scheme: str, cluster: bool) -> int | None:
    """Check host, port and the ``/db`` path; return the db the path names (or ``None``)."""
    if base_scheme == "unix":
        if not parts.path or parts.path == "/":
            raise _fail("give the socket path, e.g. unix:///run/redis/redis.sock")
        return None
    host = parts.hostname
    if not host or not _HOST.fullmatch(host):
        shown = parts.netloc.rpartition("@")[2]
        raise _fail(f"no usable host in {shown!r}, e.g. redis://127.0.0.1:6379/0")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
        raise _fail(f"port {text!r} must be a number from 1 to 65535")
    path = parts.path.removeprefix("/")
    if not path:
        return None
    if not (path.isascii() and path.isdigit()):
        raise _fail(f"database {path!r} after the port must be a whole number, e.g. /0")
    if cluster and int(path) != 0:
        raise _fail(f"a Redis Cluster has only database 0, not /{path}")
    return int(path)


def _options(url: str) -> tuple[str, dict[str, Any], bool]:
    """Split ``url`` into a plain redis-py URL, TLS keyword arguments and the cluster flag.

    Every part is checked here, so a typo is one clear :class:`ConfigError` naming the part
    instead of a silent default (``/abc`` read as database 0) or a traceback later.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES or not url.startswith(f"{scheme}://"):
        raise _fail("scheme must be one of " + ", ".join(f"{s}://" for s in SCHEMES))
    if parts.fragment or url.endswith("#"):
        raise _fail("a #fragment has no meaning in a Redis URL; remove it")
    cluster = scheme.endswith("+cluster")
    base_scheme = scheme.removesuffix("+cluster")
    kwargs: dict[str, Any] = {}
    keep: list[tuple[str, str]] = []
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    repeated = sorted({k for k, _ in pairs if [k2 for k2, _ in pairs].count(k) > 1})
    if repeated:
        raise _fail(f"parameter {repeated[0]!r} is given more than once")
    query = dict(pairs)
    if query.get("cluster", "").lower() in _TRUE:
        cluster = True
    path_db = _check_address(parts, base_scheme, cluster)
    for key, value in pairs:
        if key in _BOOL_PARAMS:
            if value.lower() not in _TRUE | _FALSE:
                raise _fail(f"{key}={value!r} must be yes or no")
            if key != "cluster":
                kwargs[key] = value.lower() in _TRUE
        elif key in _TLS_PARAMS:
            if key == "ssl_cert_reqs" and value not in _CERT_REQS:
                raise _fail(f"ssl_cert_reqs must be one of {sorted(_CERT_REQS)}")
            if not value:
                raise _fail(f"{key} is empty; give a file path")
            kwargs[key] = value
        elif key in _PASS_THROUGH:
            if key == "db":
                db = _number(key, value, minimum=0, integer=True)
                if path_db is not None and path_db != db:
                    raise _fail(f"db={value} disagrees with the database /{path_db} in the path")
                if cluster and db != 0:
                    raise _fail(f"a Redis Cluster has only database 0, not db={value}")
            elif key == "health_check_interval":
                _number(key, value, minimum=0)
            else:  # socket timeouts: a positive number of seconds
                _number(key, value, minimum=1e-9)
            keep.append((key, value))
        else:
            known = sorted(_TLS_PARAMS | _BOOL_PARAMS | _PASS_THROUGH)
            raise _fail(f"unknown parameter {key!r}; known: {', '.join(known)}")
    if (set(kwargs) & (_TLS_PARAMS | {"ssl_check_hostname"})) and base_scheme != "rediss":
        raise _fail("ssl_* parameters need the rediss:// scheme (TLS)")
    if cluster and base_scheme == "unix":
        raise _fail("a Redis Cluster is reached over TCP, not a unix socket")
    plain = urlunsplit(parts._replace(scheme=base_scheme, query=urlencode(keep)))
    return plain, kwargs, cluster


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


def _code(exc: BaseException) -> str:
    """Return the error code Redis answered with (``OOM``, ``BUSY``...), or ``""``."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code
    text = _server_text(exc)
    word = text.split(" ", 1)[0]
    return word if word.isupper() and word.isalpha() else ""


def _server_text(exc: BaseException) -> str:
    """Return the error's text without redis-py's pipeline annotation (it quotes arguments)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.rpartition(_ANNOTATION)[2]


def is_redis_down(exc: BaseException) -> bool:
    """Tell whether ``exc`` means "Redis cannot take this now": wait, keep everything, retry.

    True for a lost or refused connection, a server refusal (:data:`REFUSAL_CODES`) and a cluster
    client without a usable topology; false for a refused login or ACL rule, a wrong command or
    argument, and anything that is not a Redis error.
    """
    if isinstance(exc, (*_AUTH_ERRORS, rexc.NoPermissionError)):
        return False
    if isinstance(exc, REDIS_DOWN):
        return True
    return isinstance(exc, rexc.ResponseError) and _code(exc) in REFUSAL_CODES


def redis_reason(exc: BaseException) -> str:
    """Return what Redis said, code first, for a log line: ``OOM command not allowed ...``.

    redis-py drops the code of the refusals it has a type for and prefixes the error of a
    pipelined command with that command and its arguments; both are undone here. An error that is
    not the server's (a lost connection) is its own text, or its type when it has none.
    """
    if isinstance(exc, RedisUnavailable):
        return str(exc)
    text = _server_text(exc).strip()
    code = _code(exc)
    if code and not text.startswith(code):
        text = f"{code} {text}"
    return text or type(exc).__name__


def redis_condition(exc: BaseException) -> str:
    """Name the condition for a health record: a refusal's code (``OOM``...), ``CLUSTERDOWN``
    for a cluster client without a topology, else ``UNREACHABLE``."""
    code = _code(exc)
    if code in REFUSAL_CODES:
        return code
    if isinstance(exc, rexc.ClusterError | rexc.RedisClusterException):
        return "CLUSTERDOWN"
    if isinstance(exc, RedisUnavailable):
        return exc.condition
    return "UNREACHABLE"


def unavailable_line(url: str, exc: BaseException) -> str:
    """Say in one line for a person why Redis at ``url`` did not do it (password hidden)."""
    cause = exc.__cause__ if isinstance(exc, RedisUnavailable) and exc.__cause__ else exc
    where, reason = redacted(url), redis_reason(cause)
    if redis_condition(exc) == "UNREACHABLE":
        return f"Redis unreachable at {where}: {reason}"
    return f"Redis at {where} refused the command for now: {reason}"


def refusal_error(text: str) -> rexc.ResponseError:
    """Return the exception redis-py raises for the error reply ``text`` (as a script's
    ``redis.pcall`` returns it): ``OOM ...`` gives an OutOfMemoryError, and so on."""
    error = BaseParser.parse_error(text)  # type: ignore[no-untyped-call]
    return error if isinstance(error, rexc.ResponseError) else rexc.ResponseError(text)


@contextlib.asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Translate "Redis cannot take this now" (:func:`is_redis_down`) into
    :class:`RedisUnavailable` naming the server's reason, a refused login or command into
    :class:`ConfigError` (exit code 2: retrying cannot help)."""
    try:
        yield
    except _AUTH_ERRORS as exc:  # a ConnectionError to redis-py; not one to retry
        raise ConfigError(
            f"Redis refused the login ({exc}); check the user and password in REDIS_URL"
        ) from exc
    except rexc.NoPermissionError as exc:
        raise ConfigError(
            f"Redis ACL refused a command ({exc}); regenerate the ACL file (deploy/acl.py)"
        ) from exc
    except RedisUnavailable:
        raise
    except REDIS_ERRORS as exc:
        if not is_redis_down(exc):
            raise
        raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> RedisUnavailable:
    condition = redis_condition(exc)
    reason = redis_reason(exc)
    if condition == "UNREACHABLE":
        message = f"Redis is unreachable: {reason}"
    elif condition == "LOADING":
        message = f"Redis is loading its data: {reason}"
    else:
        message = f"Redis refused the command: {reason}"
    return RedisUnavailable(message, condition=condition)


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
