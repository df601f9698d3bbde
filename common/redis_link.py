"""Send pre-encoded commands to Redis on a held connection: the one direct-Redis seam.

The hot paths (the ingestor's appends, the processor's fenced reads and commits, the trader's
intent record) write RESP they encoded themselves (:mod:`common.resp`) instead of letting
redis-py pack each argument. Everything that reaches below redis-py's public commands for that
lives here, and only here:

* :class:`RedisLink` is one client's seam. It decides once whether the direct path exists
  (:attr:`RedisLink.direct`: a single-server client has one connection pool; a cluster client
  does not, and its callers use redis-py's commands, every key carrying a hash tag), and whether
  scripts run (:attr:`RedisLink.scripted`: an ACL without ``+eval``/``+evalsha`` turns it off,
  with one warning and a counter, and callers take their ``WATCH``/``MULTI``/``EXEC`` form).
  :meth:`RedisLink.call_script` runs a :class:`Script` by ``EVALSHA``, ``EVAL`` when the server
  does not have it cached, on either path; :meth:`RedisLink.watch` opens the fallback's
  transaction.
* :class:`Channel` is one held connection of the pool: :meth:`Channel.send` writes a payload
  without waiting, :meth:`Channel.read` and :meth:`Channel.replies` read answers in order. An
  error *answer* (``NOPERM``, ``OOM``, ``NOSCRIPT``) comes back as a value (redis-py's
  ``ResponseError``); the link is fine. A *lost* connection (reset, timeout, closed) disconnects
  it, gives it back, and raises :class:`RedisLost`, which is a
  :class:`~common.errors.RedisUnavailable` (and a builtin ``ConnectionError``, so the stages'
  existing ``REDIS_DOWN`` handlers keep working). The next send takes a fresh connection;
  :attr:`Channel.reconnects` counts every connection made again, so a writer can tell that
  Redis may have restarted between two of its writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from common.errors import RedisUnavailable, TickpipeError
from common.redis_io import REDIS_DOWN
from common.resp import encode_command

__all__ = [
    "Channel",
    "Contended",
    "RedisLink",
    "RedisLost",
    "Script",
    "ScriptsRefused",
    "direct_pool",
]

log = logging.getLogger("tickpipe.redis")


class RedisLost(RedisUnavailable, ConnectionError):
    """The connection to Redis dropped (or timed out) with a request on it; retry later."""


class ScriptsRefused(TickpipeError):
    """The server's ACL refuses scripts; the caller uses its ``WATCH``/``MULTI`` form."""


class Contended(Exception):
    """A watched key changed before ``EXEC``: the transaction wrote nothing."""


def direct_pool(redis: Any) -> Any:
    """Return the connection pool of a single-server redis-py client, else ``None``.

    A cluster client (no single pool), or any other object, goes through redis-py's commands.
    """
    pool = getattr(redis, "connection_pool", None)
    cls = getattr(pool, "connection_class", None)
    if isinstance(cls, type) and issubclass(cls, aioredis.connection.AbstractConnection):
        return pool
    return None


class Script:
    """A Lua script with its SHA1, and its ``EVAL``/``EVALSHA`` commands pre-encoded."""

    def __init__(self, source: str | bytes) -> None:
        self.source = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(self.source).hexdigest()
        #: ``EVAL <source>`` as RESP bulk strings, without the array header.
        self.eval_head = encode_command(["EVAL", self.source])[4:]

    def evalsha(self, keys: Sequence[str | bytes], args: Sequence[str | bytes]) -> bytes:
        """Encode ``EVALSHA sha len(keys) keys... args...``."""
        return encode_command(["EVALSHA", self.sha, str(len(keys)), *keys, *args])

    def eval(self, keys: Sequence[str | bytes], args: Sequence[str | bytes]) -> bytes:
        """Encode ``EVAL source len(keys) keys... args...``."""
        return encode_command(["EVAL", self.source, str(len(keys)), *keys, *args])


class Channel:
    """One connection of a :class:`RedisLink`'s pool, held until :meth:`release`.

    Commands queue on it in order; replies are read in the same order. Leaving replies unread
    and giving the connection back would hand the next user someone else's answers, so
    :meth:`discard` (disconnect, then give back) is the way out whenever that may be so.
    """

    def __init__(self, link: RedisLink) -> None:
        if link.pool is None:
            raise ValueError("a channel needs a single-server client (RedisLink.direct)")
        self.link = link
        self._conn: Any = None
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()  # connections handed to it
        #: How many times a connection was made again after this channel's first one.
        self.reconnects = 0

    @property
    def held(self) -> bool:
        """Tell whether a connection is held now."""
        return self._conn is not None

    @property
    def connection(self) -> Any:
        """The connection held now (``None`` when none is)."""
        return self._conn

    async def open(self) -> None:
        """Take a connection from the pool now (and note whether it was made again)."""
        await self._connection()

    async def _connection(self) -> Any:
        if self._conn is None:
            try:
                conn = await self.link.pool.get_connection()
            except REDIS_DOWN as exc:
                raise RedisLost(f"Redis is unreachable: {exc}") from exc
            if conn not in self._seen:
                if self._seen:
                    self.reconnects += 1  # another connection: the old one may have dropped
                self._seen.add(conn)
                conn.register_connect_callback(self._on_connect)
            self._conn = conn
        return self._conn

    def _on_connect(self, conn: Any) -> None:
        self.reconnects += 1

    async def send(self, payload: bytes | list[bytes]) -> None:
        """Write ``payload`` (one or more encoded commands) without waiting for replies."""
        conn = await self._connection()
        try:
            await conn.send_packed_command(payload, check_health=False)
        except REDIS_DOWN as exc:
            await self.discard()
            raise RedisLost(f"Redis connection lost while sending: {exc}") from exc
        except BaseException:
            await self.discard()
            raise

    async def read(self, *, untimed: bool = False) -> Any:
        """Read the next reply; an error answer is returned (a ``ResponseError``), not raised.

        ``untimed`` skips the client's per-reply socket timeout (the caller holds a deadline).
        """
        conn = self._conn
        if conn is None:
            raise RedisLost("no reply to read: the connection was given back")
        try:
            if untimed:
                return await conn.read_response(timeout=math.inf)
            return await conn.read_response()
        except rexc.ResponseError as exc:
            return exc
        except REDIS_DOWN as exc:
            await self.discard()
            raise RedisLost(f"Redis connection lost while reading: {exc}") from exc
        except BaseException:  # cancelled with the answer unread: nobody else may read it
            await self.discard()
            raise

    async def replies(self, count: int, *, timeout_s: float | None = None) -> list[Any]:
        """Read ``count`` replies in order (error answers as values).

        With ``timeout_s`` one deadline covers them all instead of a timer armed per reply,
        which on large batches costs more than reading the replies does.
        """
        if timeout_s is None:
            return [await self.read() for _ in range(count)]
        async with asyncio.timeout(timeout_s):
            return [await self.read(untimed=True) for _ in range(count)]

    async def request(self, payload: bytes, count: int = 1) -> list[Any]:
        """Send ``payload`` and read its ``count`` replies."""
        await self.send(payload)
        return await self.replies(count)

    async def release(self) -> None:
        """Give the connection back to the pool (every reply read)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.link.pool.release(conn)

    async def discard(self) -> None:
        """Disconnect the connection (replies may be unread) and give it back."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.disconnect()
            finally:
                await self.link.pool.release(conn)


class RedisLink:
    """One client's way to Redis for pre-encoded commands and scripts, fallbacks decided here.

    ``direct=False`` keeps even a single-server client on redis-py's commands (a test that
    watches every command, or a caller that wants it).
    """

    def __init__(self, redis: aioredis.Redis, *, direct: bool = True, role: str = "") -> None:
        self.redis = redis
        self.role = role
        #: The pool channels take connections from; ``None``: redis-py's commands only.
        self.pool: Any = direct_pool(redis) if direct else None
        #: ``False`` once the server refused a script: callers use WATCH/MULTI from then on.
        self.scripted = True
        #: How many times the server refused a script (a health figure).
        self.scripts_refused = 0
        self._script_channel: Channel | None = None

    @property
    def direct(self) -> bool:
        """Tell whether pre-encoded commands can be sent (a single-server client)."""
        return self.pool is not None

    def channel(self) -> Channel:
        """Return a new channel (one held connection of this client's pool)."""
        return Channel(self)

    @property
    def script_connection(self) -> Any:
        """The connection held for scripts on the direct path (``None`` when none is)."""
        return None if self._script_channel is None else self._script_channel.connection

    def refuse_scripts(self, exc: BaseException, doing: str) -> None:
        """Note that the ACL refused a script; warn once, and count every refusal."""
        self.scripts_refused += 1
        if self.scripted:
            log.warning(
                "Redis refused a script (%s); %s with WATCH/MULTI from now on "
                "(three round trips instead of one: allow +evalsha +eval for the %s user)",
                exc,
                doing,
                self.role or "stage's",
                extra={"role": self.role},
            )
        self.scripted = False

    async def call_script(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes],
        *,
        doing: str,
        meanwhile: Callable[[], object] | None = None,
        retry_lost: bool = False,
        held: bool = True,
    ) -> Any:
        """Run ``script`` (``EVALSHA``, ``EVAL`` if not cached) and return its answer.

        On the direct path (and ``held``) the script goes out on a channel held for scripts and
        ``meanwhile`` runs while Redis answers; otherwise (a cluster client, or ``held=False``
        for calls off the hot path) it goes through redis-py and ``meanwhile`` runs first.
        ``retry_lost`` sends it once more on a fresh connection when the held one was found dead
        (for scripts that are idempotent). Raises :class:`ScriptsRefused` when the ACL refuses
        scripts (and from then on without asking), :class:`RedisLost`, or the ``ResponseError``
        Redis answered.
        """
        if not self.scripted:
            raise ScriptsRefused(f"scripts are refused: {doing} uses WATCH/MULTI")
        if self.pool is not None and held:
            reply = await self._script_direct(script, keys, args, meanwhile, retry_lost)
        else:
            if meanwhile is not None:
                meanwhile()
            try:
                reply = await self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except rexc.NoScriptError:
                reply = await self._eval(script, keys, args)
            except rexc.ResponseError as exc:
                reply = exc
            except REDIS_DOWN as exc:
                raise RedisLost(f"Redis is unreachable: {exc}") from exc
        if isinstance(reply, rexc.NoPermissionError):
            self.refuse_scripts(reply, doing)
            raise ScriptsRefused(str(reply)) from reply
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _script_direct(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str | bytes],
        meanwhile: Callable[[], object] | None,
        retry_lost: bool,
    ) -> Any:
        if self._script_channel is None:
            self._script_channel = self.channel()
        channel = self._script_channel
        payload = script.evalsha(keys, args)
        for attempt in (1, 2):
            try:
                await channel.send(payload)
            except RedisLost:
                if attempt == 1 and retry_lost:
                    continue  # a connection found dead (Redis restarted): a fresh one
                raise
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            try:
                reply = await channel.read()
            except RedisLost:
                if attempt == 1 and retry_lost:
                    continue
                raise
            if isinstance(reply, rexc.NoScriptError):  # a restarted or other server: rare
                reply = await self._eval(script, keys, args)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[str | bytes]) -> Any:
        """``EVAL`` through redis-py (caches the script again); an error answer as a value."""
        try:
            return await self.redis.eval(script.source, len(keys), *keys, *args)  # type: ignore[arg-type]
        except rexc.ResponseError as exc:
            return exc
        except REDIS_DOWN as exc:
            raise RedisLost(f"Redis is unreachable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def watch(self, *keys: str) -> AsyncIterator[Any]:
        """Open a ``WATCH keys...`` transaction (redis-py pipeline, immediate mode).

        Read with it, call ``pipe.multi()``, queue the writes and ``await pipe.execute()``. A
        change of a watched key before ``EXEC`` raises :class:`Contended` (nothing written).
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*keys)
                yield pipe
            except rexc.WatchError as exc:
                raise Contended(str(exc)) from exc

    async def close(self) -> None:
        """Give back the connection held for scripts."""
        if self._script_channel is not None:
            await self._script_channel.release()
