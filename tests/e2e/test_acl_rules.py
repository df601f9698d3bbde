"""The generated ACL file on a real redis-server: each stage may write only what it owns."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.e2e.acl_support import acl_redis, stage_passwords
from tickpipe.common.names import Keys, Partition, archive_watermark
from tickpipe.deploy.acl import OPERATOR, STAGE_USERS, USERS, main
from tickpipe.processor.trimmer import NTH_ID_SCRIPT
from tickpipe.processor.wire import GATE_SCRIPT, READ_SCRIPT, read_call
from tickpipe.trader.fence import FENCE_SCRIPT, Change, encode_change

pytestmark = pytest.mark.e2e

NS = "acl"
K = Keys(NS)
P = Partition("binance", 0)
V = "binance"
ENTRY = {"f": "v"}


def _refused(call) -> bool:  # type: ignore[no-untyped-def]
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:  # a command inside a script was refused
        return "can't access" in str(exc) or "no permissions" in str(exc).lower()
    return False


def test_each_user_writes_only_its_own_streams(tmp_path: Path) -> None:
    with acl_redis(tmp_path / "redis", NS, stage_passwords()) as server:
        ing, proc, trd, dash, arch = (server.client(u) for u in STAGE_USERS)
        admin = server.client()
        # The archive consumes the streams it copies through its own group and records its
        # watermark; it appends to no stream and deletes nothing.
        admin.xadd(K.trades(P), ENTRY)
        arch.xgroup_create(K.trades(P), "archive", id="0")
        [[_, copied]] = arch.xreadgroup("archive", "archive-1", {K.trades(P): ">"})
        arch.xack(K.trades(P), "archive", copied[0][0])
        arch.set(archive_watermark(K.trades(P)), copied[0][0])
        assert _refused(lambda: arch.xadd(K.trades(P), ENTRY))
        assert _refused(lambda: arch.xadd(K.raw(P), ENTRY))
        assert _refused(lambda: arch.delete(K.trades(P)))
        assert _refused(lambda: arch.set(K.checkpoint(P), b"state"))
        admin.delete(K.trades(P))
        # The ingestor appends raw frames, and nothing downstream.
        ing.xadd(K.raw(P), ENTRY)
        ing.xadd(K.private_raw(V), ENTRY)
        ing.set(K.health("ingestor", "i1"), b"{}", px=3000)
        assert _refused(lambda: ing.xadd(K.trades(P), ENTRY))
        assert _refused(lambda: ing.xadd(K.orders(V), ENTRY))
        assert _refused(lambda: ing.delete(K.raw(P)))
        assert _refused(lambda: ing.set(K.health("trader", "t1"), b"{}"))
        assert _refused(lambda: ing.xadd(K.control(P), ENTRY))
        admin.xadd(K.control(P), ENTRY)
        assert len(ing.xrange(K.control(P))) == 1
        # It reads back its own raw streams (last trade ids at start, retries), nothing else.
        assert len(ing.xrevrange(K.raw(P), count=1)) == 1
        assert ing.eval("return redis.call('XLEN', KEYS[1])", 1, K.raw(P)) == 1
        assert _refused(lambda: ing.xrange(K.trades(P)))
        assert _refused(lambda: ing.eval("return 1", 1, K.trades(P)))
        # The processor consumes raw through its group and writes the normalised streams.
        proc.xgroup_create(K.raw(P), "processor", id="0", mkstream=True)
        [[_, entries]] = proc.xreadgroup("processor", "p1", {K.raw(P): ">"})
        proc.xack(K.raw(P), "processor", entries[0][0])
        with proc.pipeline(transaction=True) as pipe:
            pipe.watch(K.lease(P))
            pipe.multi()
            pipe.xadd(K.trades(P), ENTRY)
            pipe.xadd(K.bars(P, "1m"), ENTRY)
            pipe.set(K.checkpoint(P), b"state")
            pipe.set(K.lease(P), b"p1", px=5000)
            pipe.execute()
        proc.xadd(K.order_updates(V), ENTRY)
        # Its fenced reads (on its own connection: WATCH, the gate script, MULTI XREADGROUP
        # XREVRANGE EXEC; through redis-py: one script) and its idle wait (XREAD BLOCK, which
        # claims nothing).
        newest = ing.xadd(K.raw(P), ENTRY)
        fence = K.read_fence(P, "p1")
        with proc.pipeline(transaction=True) as pipe:
            pipe.watch(K.lease(P), fence)
            assert pipe.eval(GATE_SCRIPT, 2, K.lease(P), fence, "p1") == 1
            pipe.multi()
            pipe.xreadgroup("processor", "p1", {K.raw(P): ">"}, count=10)
            pipe.xrevrange(K.raw(P), count=1)
            [[[_, got]], [[last, _]]] = pipe.execute()
        assert [e[0] for e in got] == [newest] == [last]
        assert proc.eval(GATE_SCRIPT, 2, K.lease(P), K.read_fence(P, "other"), "other") == 0
        keys, args = read_call(lease_key=K.lease(P), stream=K.raw(P), group="processor",
                               instance="p1", cursor=">", count=10)  # fmt: skip
        assert proc.eval(READ_SCRIPT, 2, *keys, *args) == newest
        newer = ing.xadd(K.raw(P), ENTRY)
        assert [e[0] for e in proc.eval(READ_SCRIPT, 2, *keys, *args)] == [newer]
        assert not proc.xread({K.raw(P): newer}, count=1, block=10)
        # Its commit script may declare the lane's keys, and inside it the same rules hold.
        lane = (K.lease(P), K.checkpoint(P), K.raw(P), K.trades(P), K.bars(P, "1s"))
        assert proc.eval("return #KEYS", len(lane), *lane) == len(lane)
        assert _refused(lambda: proc.eval("return redis.call('XADD', KEYS[1], '*', 'a', 'b')",
                                          1, K.raw(P)))  # fmt: skip
        assert _refused(lambda: proc.eval("return 1", 1, K.intent(V, "x")))
        # The trimmer's id lookup reads any stream it trims, inside its script.
        first_trade = proc.xrange(K.trades(P), count=1)[0][0]
        assert proc.eval(NTH_ID_SCRIPT, 1, K.trades(P), 1) == first_trade
        assert proc.eval(NTH_ID_SCRIPT, 1, K.raw(P), 1) == entries[0][0]
        assert _refused(lambda: proc.eval(NTH_ID_SCRIPT, 1, Keys("other").trades(P), 1))
        assert _refused(lambda: proc.xadd(K.raw(P), ENTRY))
        assert _refused(lambda: proc.xadd(K.orders(V), ENTRY))
        assert _refused(lambda: proc.delete(K.raw(P)))
        assert _refused(lambda: proc.set(K.intent(V, "x"), b"1"))
        # The trader consumes signals and order updates, and records orders and positions.
        admin.xadd(K.signals(P), ENTRY)
        trd.xgroup_create(K.signals(P), "trader", id="0", mkstream=True)
        assert trd.xreadgroup("trader", "t1", {K.signals(P): ">"})
        trd.xadd(K.orders(V), ENTRY)
        trd.set(K.intent(V, "tp-1"), b"{}", nx=True)
        trd.hset(K.positions(V), "BTCUSDT", "0.01")
        intent_keys = (K.intent(V, "tp-2"), K.orders(V), K.working_orders(V))
        assert trd.eval("return #KEYS", 3, *intent_keys) == 3
        assert _refused(lambda: trd.eval("return 1", 1, K.checkpoint(P)))
        # Its lease, and every write of its fenced scripts (the lease checked in the script).
        assert trd.set(K.trader_lease(V), "t1", nx=True, px=5000)
        assert trd.set(K.trader_signals_lease(P), "t1", nx=True, px=5000)
        trd.xgroup_create(K.order_updates(V), "trader", id="0", mkstream=True)
        account = Change(K.trader_lease(V)).check(K.intent(V, "tp-3"), None)
        account.write("SET", K.intent(V, "tp-3"), "{}").write("SADD", K.working_orders(V), "x")
        account.write("HSET", K.positions(V), "BTCUSDT", "0.02")
        account.write("XADD", K.orders(V), "*", "event", "ack")
        account.write("XADD", K.trader_dead_letters(V), "*", "reason", "test")
        account.write("XACK", K.order_updates(V), "trader", "0-1")
        account.write("PEXPIRE", K.trader_lease(V), "5000")
        signals = Change(K.trader_signals_lease(P)).write("XACK", K.signals(P), "trader", "0-1")
        for change in (account, signals):
            keys, args = encode_change(change, "t1")
            assert trd.eval(FENCE_SCRIPT, len(keys), *keys, *args) == 1
        assert trd.hget(K.positions(V), "BTCUSDT") == b"0.02"
        keys, args = encode_change(
            Change(K.trader_lease(V)).write("SET", K.checkpoint(P), "x"), "t1"
        )
        assert _refused(lambda: trd.eval(FENCE_SCRIPT, len(keys), *keys, *args))
        assert _refused(lambda: proc.set(K.trader_lease(V), "p1"))
        assert _refused(lambda: dash.set(K.trader_lease(V), "d1"))
        assert _refused(lambda: trd.xadd(K.signals(P), ENTRY))
        assert _refused(lambda: trd.xadd(K.raw(P), ENTRY))
        assert _refused(lambda: trd.set(K.checkpoint(P), b"x"))
        assert _refused(lambda: trd.set(K.kill_switch(V), b"1"))
        # The dashboard reads everything and writes nothing but its own health.
        assert dash.xlen(K.trades(P)) == 1 and dash.hgetall(K.positions(V))
        assert list(dash.scan_iter(match=f"{NS}:*"))
        dash.set(K.health("dashboard", "d1"), b"{}", px=3000)
        assert _refused(lambda: dash.xadd(K.trades(P), ENTRY))
        assert _refused(lambda: dash.delete(K.positions(V)))
        assert _refused(lambda: dash.flushall())
        # The trader's lease is a plain key of the trader's own, also inside its scripts.
        lease = f"{NS}:{{{V}}}:trader-lease"
        assert lease == K.trader_lease(V)
        assert trd.set(lease, b"t2", px=3000)
        assert trd.eval("return #KEYS", 3, lease, K.intent(V, "tp-3"), K.positions(V)) == 3
        for other in (ing, proc, dash):
            assert _refused(lambda c=other: c.set(lease, b"x"))  # type: ignore[misc]
        # The operator flips the kill switch, writes control entries and raw replays, reads
        # everything, and cannot touch signals, intents, orders, positions or leases.
        op = server.client(OPERATOR)
        op.set(K.kill_switch(V), b"{}")
        assert op.exists(K.kill_switch(V)) and trd.get(K.kill_switch(V)) == b"{}"
        op.delete(K.kill_switch(V))
        op.xadd(K.control(P), ENTRY)
        op.xadd(K.raw(P), ENTRY)
        assert op.xlen(K.trades(P)) == 1 and op.hgetall(K.positions(V))
        assert op.get(K.health("dashboard", "d1")) == b"{}"
        for forged in (
            lambda: op.xadd(K.signals(P), ENTRY),
            lambda: op.set(K.intent(V, "tp-9"), b"{}"),
            lambda: op.xadd(K.orders(V), ENTRY),
            lambda: op.hset(K.positions(V), "BTCUSDT", "9"),
            lambda: op.sadd(K.working_orders(V), "tp-9"),
            lambda: op.set(lease, b"op"),
            lambda: op.set(K.lease(P), b"op"),
            lambda: op.xadd(K.order_updates(V), ENTRY),
            lambda: op.delete(K.raw(P)),
            lambda: op.xtrim(K.raw(P), maxlen=0),
            lambda: op.eval("return redis.call('XADD', KEYS[1], '*', 'a', 'b')", 1, K.raw(P)),
            lambda: op.xgroup_setid(K.signals(P), "trader", "$"),
            lambda: op.set(K.health("trader", "t1"), b"{}"),
            lambda: op.flushall(),
        ):
            assert _refused(forged)
        # Another namespace is out of every stage's reach; the default user is off.
        assert _refused(lambda: ing.xadd(Keys("other").raw(P), ENTRY))
        assert _refused(lambda: dash.xlen(Keys("other").trades(P)))
        once = Retry(NoBackoff(), 0)
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port, retry=once).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port, username="processor", password="no", retry=once).ping()
        for client in (ing, proc, trd, dash, op, admin):
            client.close()


def test_generator_writes_hashes_and_private_env_files(tmp_path: Path) -> None:
    acl, env_dir = tmp_path / "users.acl", tmp_path / "env"
    assert main(["--namespace", NS, "--out", str(acl), "--env-dir", str(env_dir)]) == 0
    text = acl.read_text()
    assert text.startswith("user default on #") and "nopass" not in text
    for user in USERS:
        env = env_dir / f"{user}.env"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        url = env.read_text().strip().removeprefix("REDIS_URL=")
        assert url.startswith(f"redis://{user}:")
        password = url.split("@")[0].rsplit(":", 1)[1]
        assert len(password) >= 24 and password not in text
    assert main(["--namespace", "bad namespace!"]) == 2


def test_transactions_survive_a_restart_under_the_generated_users(tmp_path: Path) -> None:
    """Redis replays the AOF as `default` and re-checks the ACL at each EXEC: the generated
    file must let it, or every transaction (each commit, each multi-write script) is dropped
    at the next start without an error."""
    passwords = stage_passwords()
    with acl_redis(tmp_path / "redis", NS, passwords) as server:
        proc = server.client("processor")
        with proc.pipeline(transaction=True) as pipe:
            pipe.xadd(K.trades(P), ENTRY)
            pipe.set(K.checkpoint(P), b"state-1")
            pipe.execute()
        script = (
            "redis.call('XADD', KEYS[1], '*', 'a', 'b') "
            "return redis.call('SET', KEYS[2], 'state-2')"
        )
        proc.eval(script, 2, K.trades(P), K.checkpoint(P))
        proc.close()
    with acl_redis(tmp_path / "redis", NS, passwords) as server:
        proc = server.client("processor")
        assert (proc.xlen(K.trades(P)), proc.get(K.checkpoint(P))) == (2, b"state-2")
        proc.close()
