"""Hold the account for one trader at a time: a lease per venue account, renewed, fenced.

The lease is the key ``{V}:trader-lease`` (``SET NX PX``) holding a token unique to this process
(``instance:pid:random``, so two traders started with the same ``TICKPIPE_INSTANCE`` still tell
themselves apart). Acknowledgements of a partition's signals live in that partition's hash slot,
so each signals partition has a companion lease ``{P}:trader-lease`` with the same token; the
trader takes all of them or none. Every write of the trader is fenced by one of them
(:mod:`trader.fence`).

The owner renews every lease every ``lease_ms / 4``. Locally it counts as *fresh* for 60 % of
the lease period after the last confirmed renewal was sent: a trader that could not renew in
that time (frozen, partitioned, Redis down) stops reading and sends no order before it has
renewed again (:meth:`Lease.confirm`), well before another trader could take the lease. A
standby tries to take the lease every ``lease_ms / 5``, so a dead or frozen owner is replaced
within two lease periods.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from tickpipe.common.names import Keys, Partition
from tickpipe.trader.fence import Change, Fence, LeaseLost

__all__ = ["FRESH_SHARE", "Lease", "LeaseLost", "new_token"]

#: Share of the lease period after the last confirmed renewal during which the owner acts.
FRESH_SHARE = 0.6


def new_token(instance: str) -> str:
    """Return a lease token unique to this process: ``instance:pid:random``."""
    return f"{instance}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """This trader's hold on one venue account and its signals partitions."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        venue: str,
        partitions: Iterable[Partition],
        *,
        token: str,
        lease_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.token = token
        self.lease_ms = lease_ms
        self.monotonic = monotonic
        self.fence = Fence(redis, token)
        self.account_key = keys.trader_lease(venue)
        self.signals_keys = {p: keys.trader_signals_lease(p) for p in partitions}
        self.confirmed_at: float | None = None  # when the last confirmed renewal was sent

    @property
    def keys(self) -> list[str]:
        return [self.account_key, *self.signals_keys.values()]

    @property
    def renew_s(self) -> float:
        return self.lease_ms / 4000

    @property
    def retry_s(self) -> float:
        return self.lease_ms / 5000

    def fresh(self) -> bool:
        """Whether the lease was confirmed recently enough to act on it (module docstring)."""
        if self.confirmed_at is None:
            return False
        return self.monotonic() - self.confirmed_at < self.lease_ms / 1000 * FRESH_SHARE

    async def confirm(self) -> None:
        """Make sure the lease is fresh: renew it now if it is not (raise LeaseLost if lost).

        Called before anything leaves for the venue: a trader whose event loop was only busy
        renews and goes on; one that was frozen and lost its lease learns it here.
        """
        if self.fresh():
            return
        await self.renew()
        if not self.fresh():
            raise LeaseLost("the lease could not be confirmed in time; not acting on it")

    async def acquire(self) -> bool:
        """Take every lease key, or none of them; return whether this trader holds them now."""
        sent = self.monotonic()
        taken: list[str] = []
        for key in self.keys:
            if await self.redis.set(key, self.token, nx=True, px=self.lease_ms):
                taken.append(key)
                continue
            try:  # ours already (a term of this process ended on an error): extend it
                await self._extend(key)
            except LeaseLost:
                for ours in taken:
                    await self._drop(ours)
                return False
            taken.append(key)
        self.confirmed_at = sent
        return True

    async def renew(self) -> None:
        """Extend every lease key; raise :class:`LeaseLost` if one is not this trader's."""
        sent = self.monotonic()
        for key in self.keys:
            await self._extend(key)
        self.confirmed_at = sent

    async def release(self) -> None:
        """Delete the lease keys this trader holds (a standby can take over at once)."""
        self.confirmed_at = None
        for key in self.keys:
            await self._drop(key)

    async def _extend(self, key: str) -> None:
        await self.fence.apply(Change(key).write("PEXPIRE", key, str(self.lease_ms)))

    async def _drop(self, key: str) -> None:
        try:
            await self.fence.apply(Change(key).write("DEL", key))
        except LeaseLost:
            pass
