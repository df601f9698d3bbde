"""Record order intents in Redis in one round trip, before the order is sent.

:data:`INTENT_SCRIPT` does what the ``WATCH``/``MULTI`` transaction did, atomically: it checks that
this trader holds the account's lease (``{V}:trader-lease`` holds its token; else it writes
nothing and :class:`~trader.fence.LeaseLost` is raised), then ``SET NX`` of the intent key; if it
was new, the ``intent`` entry in ``{V}:orders`` and the client order id in the working-orders set;
if it existed, the stored intent comes back (an earlier run recorded it, and may have sent it: the
order is then looked up, never sent again). Its four keys are venue-wide (hash tag ``{venue}``),
so the script is legal on Redis Cluster.

The script goes out as ``EVALSHA`` (``EVAL`` when the server does not have it cached, e.g. after a
restart). On a plain redis-py client it is written on a connection held for it, and the caller's
pure work for the order (signing it) runs while Redis answers. A Redis user whose ACL refuses
scripts gets the same writes through ``WATCH``/``MULTI`` (three round trips), with one warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions as rexc

from common.contract import order_entry
from common.errors import RedisUnavailable
from common.names import Keys
from common.redis_link import Contended, RedisLink, Script, ScriptsRefused
from common.schema import OrderIntent
from trader.fence import LeaseLost

__all__ = ["INTENT_SCRIPT", "INTENT_SHA", "IntentRecorder"]

log = logging.getLogger("tickpipe.trader")

#: Record a new intent: ``KEYS`` = intent key, ``{V}:orders``, working-orders set, the account's
#: lease; ``ARGV`` = the intent as JSON, its client order id, this trader's lease token, then the
#: ``intent`` entry's field/value pairs. Answers 1 when recorded, 0 when the lease is not this
#: trader's (nothing written), else the stored intent.
INTENT_SCRIPT = """
if redis.call('GET', KEYS[4]) ~= ARGV[3] then
  return 0
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
  redis.call('SADD', KEYS[3], ARGV[2])
  return 1
end
return redis.call('GET', KEYS[1])
"""
_INTENT = Script(INTENT_SCRIPT)
INTENT_SHA = _INTENT.sha


class IntentRecorder:
    """Record the intents of one venue: the script, or the transaction when scripts are refused."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        venue: str,
        *,
        token: str,
        lease_key: str,
        link: RedisLink | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.venue = venue
        self.token = token
        self.lease_key = lease_key
        #: The one seam to Redis (the trader's, shared with its fence): the script's held
        #: connection on a single-server client, and the fallback to WATCH/MULTI when the ACL
        #: refuses scripts.
        self.link = link or RedisLink(redis, role="trader")

    async def load_script(self) -> None:
        """Cache :data:`INTENT_SCRIPT` on the server, so the first order needs no ``EVAL``."""
        try:
            await self.redis.script_load(INTENT_SCRIPT)
        except rexc.ResponseError as exc:  # e.g. an ACL without SCRIPT LOAD: EVAL will do it
            log.info("intent script not preloaded", extra={"error": str(exc)})

    async def record(
        self, intent: OrderIntent, *, meanwhile: Callable[[], object] | None = None
    ) -> dict[str, Any] | None:
        """Record ``intent`` and return ``None``, or return the stored intent's fields.

        ``meanwhile`` is called exactly once, while Redis answers when it can be. Raises
        :class:`~trader.fence.LeaseLost` (nothing written) if this trader lost its lease.
        """
        called = False

        def once() -> None:
            nonlocal called
            if meanwhile is not None and not called:
                called = True
                meanwhile()

        if self.link.scripted:
            try:
                return await self._scripted(intent, once)
            except ScriptsRefused:
                pass
        once()
        return await self._transaction(intent)

    def _args(self, intent: OrderIntent) -> tuple[list[str], list[Any]]:
        fields = intent.to_fields()
        keys = [
            self.keys.intent(self.venue, intent.client_order_id),
            self.keys.orders(self.venue),
            self.keys.working_orders(self.venue),
            self.lease_key,
        ]
        args: list[Any] = [orjson.dumps(fields), intent.client_order_id, self.token]
        for name, value in order_entry(intent).items():
            args += (name, value)
        return keys, args

    async def _scripted(
        self, intent: OrderIntent, meanwhile: Callable[[], None]
    ) -> dict[str, Any] | None:
        """Run the script; a connection found dead is replaced and the script sent once more,
        as redis-py's own retry would: the script is idempotent (a second run that finds the
        intent returns it, and the order is then looked up, never sent again)."""
        keys, args = self._args(intent)
        reply = await self.link.call_script(
            _INTENT, keys, args, doing="recording intents", meanwhile=meanwhile, retry_lost=True
        )
        if reply == 1:
            return None
        if reply == 0:
            raise LeaseLost(f"{self.lease_key} is not held by {self.token}")
        stored: dict[str, Any] = orjson.loads(reply)
        return stored

    async def _transaction(self, intent: OrderIntent) -> dict[str, Any] | None:
        """Record ``intent`` with ``WATCH``/``GET``/``MULTI`` (for users without scripts).

        A transaction cut short by a change of a watched key (the lease's own renewal, for one)
        is tried again from the start.
        """
        key = self.keys.intent(self.venue, intent.client_order_id)
        for _ in range(10):
            try:
                async with self.link.watch(self.lease_key, key) as pipe:
                    holder: Any = await pipe.get(self.lease_key)
                    if holder is None or bytes(holder).decode() != self.token:
                        raise LeaseLost(f"{self.lease_key} is not held by {self.token}")
                    existing = await pipe.get(key)
                    if existing is not None:
                        stored: dict[str, Any] = orjson.loads(existing)
                        return stored
                    pipe.multi()
                    pipe.set(key, orjson.dumps(intent.to_fields()), nx=True)
                    pipe.xadd(self.keys.orders(self.venue), order_entry(intent))
                    pipe.sadd(self.keys.working_orders(self.venue), intent.client_order_id)
                    await pipe.execute()
                    return None
            except Contended:
                continue
        raise RedisUnavailable(f"intent {intent.client_order_id}: its keys kept changing")

    async def close(self) -> None:
        """Give the held connection back to the pool."""
        await self.link.close()
