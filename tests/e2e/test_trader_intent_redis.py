"""The trader's intent script on a real redis-server: held connection, NOSCRIPT, ACL users."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from common.names import Keys, Partition
from common.schema import OrderIntent, decode_fields
from deploy.acl import acl_rules
from tests.e2e.acl_support import ADMIN_PASSWORD, acl_redis, stage_passwords
from tests.e2e.conftest import RedisServer
from trader.intents import INTENT_SHA
from trader.lease import Lease
from trader.ledger import Ledger

pytestmark = pytest.mark.e2e

NS = "tir"
KEYS = Keys(NS)
V = "binance"


def _intent(n: int) -> OrderIntent:
    return OrderIntent(
        client_order_id=f"tp-e2e-{n}",
        signal_id=f"threshold:BTCUSDT:{n}",
        venue=V,
        symbol="BTCUSDT",
        side="buy",
        order_type="MARKET",
        qty="0.001",
        price=None,
        ts_signal=1_700_000_000_000_000_000 + n,
        ts_intent=1_700_000_000_000_000_100 + n,
    )


async def _ledger(redis: aioredis.Redis) -> Ledger:
    """A ledger whose trader holds the account's lease (its writes are fenced by it)."""
    lease = Lease(redis, KEYS, V, [Partition(V, 0)], token="e2e:1:ab", lease_ms=60_000)
    assert await lease.acquire()
    return Ledger(redis, KEYS, V, clock=time.time_ns, counts={"rejects": 0}, lease=lease)


async def _records(redis: aioredis.Redis) -> tuple[dict[str, Any], list[dict[str, str]], set[str]]:
    stored = {}
    for n in range(1, 10):
        raw = await redis.get(KEYS.intent(V, f"tp-e2e-{n}"))
        if raw:
            stored[f"tp-e2e-{n}"] = orjson.loads(raw)
    entries = [decode_fields(f) for _, f in await redis.xrange(KEYS.orders(V))]
    working = {m.decode() for m in await redis.smembers(KEYS.working_orders(V))}
    return stored, entries, working


# The test kills and cancels connections on purpose; a socket redis-py drops on the way may be
# finalised later by the garbage collector, which pytest reports as an unraisable warning at
# whatever moment it happens (seen once in CI, never when run alone). Only that is ignored here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_held_connection_records_once_survives_noscript_and_a_cancel(
    redis_server: RedisServer,
) -> None:
    async def scenario() -> None:
        redis = aioredis.Redis.from_url(redis_server.url)
        ledger = await _ledger(redis)
        await ledger.intents.load_script()
        signed: list[int] = []
        assert await ledger.record_intent(_intent(1), meanwhile=lambda: signed.append(1)) is None
        assert (
            signed == [1] and ledger.intents.link.script_connection is not None
        )  # the script went on the held one
        held = ledger.intents.link.script_connection
        assert await ledger.record_intent(_intent(1)) == _intent(1)  # never twice
        await redis.script_flush()
        assert await ledger.record_intent(_intent(2), meanwhile=lambda: signed.append(2)) is None
        assert signed == [1, 2] and ledger.intents.link.script_connection is held
        assert await redis.script_exists(INTENT_SHA) == [True]

        # Cancelled while the answer is unread (the server holds writes a moment, so the answer
        # cannot be there yet): the connection is dropped, never reused.
        await redis.execute_command("CLIENT", "PAUSE", "300", "WRITE")

        async def cancelled() -> None:
            task = asyncio.current_task()
            assert task is not None
            await ledger.record_intent(_intent(3), meanwhile=task.cancel)

        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(cancelled())
        assert ledger.intents.link.script_connection is None
        # Redis ran the dropped call or not; either way the intent is recorded exactly once.
        assert await ledger.record_intent(_intent(3)) in (None, _intent(3))
        assert await ledger.record_intent(_intent(4)) is None
        assert ledger.intents.link.script_connection is not None
        # The held connection dies (as after a Redis restart): replaced, and the script sent again.
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert await ledger.record_intent(_intent(5)) is None

        stored, entries, working = await _records(redis)
        assert working == {f"tp-e2e-{n}" for n in range(1, 6)}
        assert [e["client_order_id"] for e in entries] == sorted(working)
        for n in range(1, 6):
            assert stored[f"tp-e2e-{n}"] == _intent(n).to_fields()
            assert entries[n - 1] == {**_intent(n).to_fields(), "event": "intent"}
        await ledger.intents.close()
        await redis.aclose()

    asyncio.run(scenario())


def test_the_trader_acl_user_records_intents(tmp_path: Path) -> None:
    async def scenario(url: str, admin: aioredis.Redis) -> bool:
        redis = aioredis.Redis.from_url(url)
        ledger = await _ledger(redis)
        await ledger.intents.load_script()
        assert await ledger.record_intent(_intent(1)) is None
        assert await ledger.record_intent(_intent(1)) == _intent(1)
        assert await ledger.record_intent(_intent(2)) is None
        stored, entries, working = await _records(admin)
        assert working == {"tp-e2e-1", "tp-e2e-2"} and len(entries) == 2
        assert stored["tp-e2e-2"] == _intent(2).to_fields()
        await ledger.intents.close()
        await redis.aclose()
        return ledger.intents.link.scripted

    with acl_redis(tmp_path / "redis", NS, stage_passwords()) as server:

        async def run() -> bool:
            admin = aioredis.Redis(port=server.port, username="admin", password=ADMIN_PASSWORD)
            try:
                return await scenario(server.url("trader"), admin)
            finally:
                await admin.aclose()

        scripted = asyncio.run(run())
    # Either path records the same; the one-round-trip script needs the ACL to allow EVALSHA.
    rules = acl_rules(NS)["trader"].split()
    assert scripted == any(r in rules for r in ("+evalsha", "+@scripting", "+@all"))
