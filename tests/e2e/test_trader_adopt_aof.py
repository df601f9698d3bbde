"""End to end: Redis loses the tail of its AOF; the trader adopts the order it no longer knows.

A real ``redis-server`` (AOF, ``appendfsync everysec``), the mock exchange and a trader process.
The test writes the market and the signals itself. After the second order is filled at the
venue, redis-server is killed and the AOF is cut back to where it stood before that signal, as
an OS crash loses the last second of writes: the signal, the intent, its ``orders`` entries and
its position change are gone. Redis starts again; the trader must adopt the order from the venue,
so that the positions in Redis equal the venue's fills, and must not send it again.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from common.schema import decode_fields
from common.units import client_order_id_for
from mock_ws.ground_truth import read_ground_truth
from tests.e2e.chaos_support import crash_with_aof_cut, mark_aof
from tests.e2e.conftest import Processes, RedisServer, start_redis, wait_for
from tests.e2e.test_trader_failover import KEY, KEYS, PRICE, SECRET, P, V, _market, _signal
from tests.e2e.test_trader_failover import _venue_orders as venue_orders

pytestmark = pytest.mark.e2e


def _events(client: redis.Redis) -> list[dict[str, str]]:
    try:
        return [decode_fields(f) for _, f in client.xrange(KEYS.orders(V))]
    except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
        return []


def _has(client: redis.Redis, event: str, cid: str) -> bool:
    return any(e["event"] == event and e.get("client_order_id") == cid for e in _events(client))


@pytest.mark.timeout(180)
def test_an_order_whose_intent_redis_lost_is_adopted_and_not_sent_again(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    truth_path = tmp_path / "ground-truth.jsonl"
    processes.env.update(BINANCE_API_KEY=KEY, BINANCE_API_SECRET=SECRET)
    _, port = processes.start_mock("--seed", "3", "--symbols", "BTCUSDT",
                                   "--ground-truth", str(truth_path))  # fmt: skip
    processes.env.update(
        REDIS_URL=redis_server.url,
        TICKPIPE_NAMESPACE=KEYS.namespace,
        TICKPIPE_SYMBOLS="BTCUSDT",
        TICKPIPE_INSTANCE="trd",
        TICKPIPE_BINANCE_WS_API_URL=f"ws://127.0.0.1:{port}/ws-api/v3",
        TICKPIPE_ORDER_QTY="0.01",
        TICKPIPE_TRADER_LEASE_MS="1500",
    )
    client = redis_server.client()
    market_stop = threading.Event()
    market = threading.Thread(target=_market, args=(client, market_stop), daemon=True)
    market.start()
    first, lost = (client_order_id_for(_signal(n).signal_id) for n in (1, 2))
    try:
        trader = processes.start("trader", "-m", "trader")
        client.xadd(KEYS.signals(P), _signal(1).to_fields())
        wait_for(lambda: _has(client, "ack", first), timeout_s=30, what="the first order")
        market_stop.set()  # nothing else writes while the cut point is taken
        market.join(5)
        mark = mark_aof(redis_server)
        client.xadd(KEYS.signals(P), _signal(2).to_fields())
        wait_for(lambda: _has(client, "ack", lost), timeout_s=30, what="the second order")
        crash_with_aof_cut(redis_server, mark)  # an OS crash: the last writes are lost
        fresh = start_redis(redis_server.data_dir, redis_server.port)
        redis_server.proc = fresh.proc
        client = redis_server.client()
        assert not client.exists(KEYS.intent(V, lost)), "the cut kept the second intent"
        market_stop = threading.Event()
        market = threading.Thread(target=_market, args=(client, market_stop), daemon=True)
        market.start()
        wait_for(lambda: _has(client, "adopted", lost), timeout_s=60, what="the adoption")
        assert trader.stop() == 0, trader.tail()
    except AssertionError:
        print(processes.dump_logs())
        raise
    finally:
        market_stop.set()
        market.join(5)

    requests = Counter(o["client_order_id"] for o in read_ground_truth(truth_path).orders())
    assert requests == Counter({first: 1, lost: 1})  # never sent again
    orders = asyncio.run(venue_orders(port))
    filled = sum((Decimal(o["executedQty"]) * (1 if o["side"] == "BUY" else -1) for o in orders),
                 Decimal(0))  # fmt: skip
    positions = decode_fields(client.hgetall(KEYS.positions(V)))
    assert Decimal(positions["BTCUSDT"]) == filled == Decimal("0.02"), (positions, orders)
    adopted = next(e for e in _events(client) if e["event"] == "adopted")
    assert adopted["status"] == "FILLED" and adopted["signal_id"] == ""
    print(f"adopted after the AOF cut: {adopted['reason']}; market price {PRICE}")
