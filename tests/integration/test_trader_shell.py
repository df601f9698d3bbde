"""Integration tests of the trader loop on fakeredis with a fake venue: one order per signal."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

import fakeredis
import orjson
import pytest

from tests.builders import build_order_update, build_signal
from tests.waits import until
from tickpipe.common.errors import AmbiguousOutcome, ConfigError
from tickpipe.common.names import GROUP_TRADER
from tickpipe.common.schema import OrderUpdate, Signal, Trade, decode_fields
from tickpipe.common.settings import Secret, Settings
from tickpipe.common.units import client_order_id_for
from tickpipe.trader.core import RiskLimits
from tickpipe.trader.lease import Lease, new_token
from tickpipe.trader.ledger import Ledger
from tickpipe.trader.shell import run
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

KEY, SECRET = "test-key", "test-secret"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "namespace": "tt",
        "instance": "trader-test",
        "binance_api_key": Secret(KEY),
        "binance_api_secret": Secret(SECRET),
        "health_interval_s": 0.05,
        "trader_lease_ms": 1000,  # a crashed run's lease runs out in a second
        # No exchangeInfo here (port 1 refuses): a venue fake has no filters, and a mock that
        # another run left on the default port must not lend it its own.
        "binance_rest_url": "http://127.0.0.1:1",
    }
    values.update(overrides)
    return Settings(**values)


def make_signal(n: int = 1, **overrides: Any) -> Signal:
    now = time.time_ns()
    fields: dict[str, Any] = {
        "signal_id": f"threshold:BTCUSDT:{n}",
        "ts_event": now - 5_000_000,
        "ts_recv": now - 4_000_000,
        "ts_signal": now - 3_000_000,
    }
    return build_signal(**(fields | overrides))


class FakeVenue:
    """A venue that checks signatures, keeps the orders it accepted, and can misbehave."""

    def __init__(self, *, status: str = "FILLED") -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.place_calls: list[dict[str, Any]] = []
        self.status_calls: list[dict[str, Any]] = []
        self.fill_status = status
        self.timeouts_after_accept = 0  # next N places: accept, then "time out"
        self.hang_after_accept = False  # accept, then never answer (until cancelled)
        self.hang_before_accept = False  # never answer and never accept
        self.place_error: dict[str, Any] | None = None
        self.cancel_calls: list[dict[str, Any]] = []
        self.cancel_times_out = False
        self.open_orders_calls = 0
        self.all_orders_calls: list[dict[str, Any]] = []
        self.lists_open_orders = True
        self.connects = 1
        self.closed = False

    def _check(self, params: dict[str, Any]) -> None:
        assert params["apiKey"] == KEY
        assert params["signature"] == hmac_signature(SECRET, ws_api_payload(params))

    async def place(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check(params)
        self.place_calls.append(params)
        if self.hang_before_accept:
            await asyncio.Event().wait()
        if int(params["timestamp"]) < time.time_ns() // 1_000_000 - int(params["recvWindow"]):
            # As Binance: a request stamped longer than its receive window ago is refused.
            return {"id": "1", "status": 400, "error": {"code": -1021, "msg": "Timestamp for "
                    "this request is outside of the recvWindow."}}  # fmt: skip
        if self.place_error is not None:
            return {"id": "1", "status": 400, "error": self.place_error}
        cid = params["newClientOrderId"]
        if cid in self.orders and self.orders[cid]["status"] in ("NEW", "PARTIALLY_FILLED"):
            return {
                "id": "1",
                "status": 400,
                "error": {"code": -2010, "msg": "Duplicate order sent."},
            }
        limit = params["type"] == "LIMIT"
        status = "NEW" if limit else self.fill_status
        filled = params["quantity"] if status == "FILLED" else "0"
        self.orders[cid] = {
            "symbol": params["symbol"],
            "orderId": len(self.orders) + 1,
            "clientOrderId": cid,
            "transactTime": 1_700_000_000_000,
            "time": time.time_ns() // 1_000_000,
            "price": params.get("price", "0"),
            "origQty": params["quantity"],
            "executedQty": filled,
            "cummulativeQuoteQty": "61.8" if filled != "0" else "0",
            "status": status,
            "type": params["type"],
            "side": params["side"],
        }
        if self.hang_after_accept:
            await asyncio.Event().wait()
        if self.timeouts_after_accept:
            self.timeouts_after_accept -= 1
            raise AmbiguousOutcome("order.place: no answer within 10 s")
        return {"id": "1", "status": 200, "result": dict(self.orders[cid])}

    async def status(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check(params)
        self.status_calls.append(params)
        order = self.orders.get(params["origClientOrderId"])
        if order is None:
            return {
                "id": "2",
                "status": 400,
                "error": {"code": -2013, "msg": "Order does not exist."},
            }
        return {"id": "2", "status": 200, "result": dict(order)}

    async def cancel(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check(params)
        self.cancel_calls.append(params)
        order = self.orders.get(params["origClientOrderId"])
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return {
                "id": "3",
                "status": 400,
                "error": {"code": -2011, "msg": "Unknown order sent."},
            }
        if self.cancel_times_out:
            order["status"] = "CANCELED"
            raise AmbiguousOutcome("order.cancel: no answer within 10 s")
        order["status"] = "CANCELED"
        return {
            "id": "3",
            "status": 200,
            "result": {**order, "origClientOrderId": order["clientOrderId"]},
        }

    async def open_orders(self, params: dict[str, Any]) -> dict[str, Any]:
        self._check(params)
        self.open_orders_calls += 1
        if not self.lists_open_orders:
            return {"id": "4", "status": 400, "error": {"code": -1100, "msg": "Illegal method."}}
        result = [
            dict(o) for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")
        ]
        return {"id": "4", "status": 200, "result": result}

    async def all_orders(self, params: dict[str, Any]) -> dict[str, Any]:
        """``allOrders``: every order of a symbol (open and closed) since ``startTime``."""
        self._check(params)
        self.all_orders_calls.append(params)
        since = int(params.get("startTime") or 0)
        result = [
            dict(o)
            for o in self.orders.values()
            if o.get("symbol") == params["symbol"] and int(o.get("time", 0)) >= since
        ]
        return {"id": "5", "status": 200, "result": result}

    def fill(self, cid: str, qty: str, quote: str) -> None:
        """Fill an open order at the venue (no update reaches the trader)."""
        order = self.orders[cid]
        order["executedQty"] = str(Decimal(order["executedQty"]) + Decimal(qty))
        order["cummulativeQuoteQty"] = str(Decimal(order["cummulativeQuoteQty"]) + Decimal(quote))
        full = Decimal(order["executedQty"]) >= Decimal(order["origQty"])
        order["status"] = "FILLED" if full else "PARTIALLY_FILLED"

    async def aclose(self) -> None:
        self.closed = True


async def order_events(redis: Any, settings: Settings) -> list[dict[str, str]]:
    entries = await redis.xrange(settings.keys.orders("binance"))
    return [decode_fields(fields) for _, fields in entries]


def signal_stream(settings: Settings) -> str:
    return settings.keys.signals(next(iter(settings.partitions())))


async def pending(redis: Any, stream: str) -> int:
    info = await redis.xpending(stream, GROUP_TRADER)
    return int(info["pending"])


async def seed_market(redis: Any, settings: Settings, symbol: str, price: str) -> None:
    """Write a trade of ``symbol`` at ``price`` received now, as the processor would have."""
    now = time.time_ns()
    partition = next(p for p, symbols in settings.partitions().items() if symbol in symbols)
    trade = Trade(settings.venue, symbol, str(now), price, "0.01", "buy", now, now)
    await redis.xadd(settings.keys.trades(partition), trade.to_fields())


async def owned_ledger(
    redis: Any, settings: Settings, *, counts: dict[str, int] | None = None
) -> Ledger:
    """Return a ledger whose trader holds the account's lease, as a running trader's does.

    ``await ledger.lease.release()`` lets a trader started afterwards take the account.
    """
    lease = Lease(
        redis,
        settings.keys,
        settings.venue,
        settings.partitions(),
        token=new_token("test"),
        lease_ms=60_000,
    )
    assert await lease.acquire()
    counts = counts if counts is not None else defaultdict(int)
    return Ledger(
        redis, settings.keys, settings.venue, clock=time.time_ns, counts=counts, lease=lease
    )


class Harness:
    """Run the trader in a task against shared fakeredis and venue; stop or crash it."""

    def __init__(
        self,
        venue: FakeVenue,
        settings: Settings | None = None,
        *,
        redis: Any = None,
        **run_kw: Any,
    ) -> None:
        self.redis = redis if redis is not None else fakeredis.FakeAsyncRedis()
        self.settings = settings or make_settings()
        self.venue = venue
        self.run_kw = {
            "status_attempts": 3,
            "retry_base_s": 0.01,
            "recv_window_ms": 100,
            "guard_interval_s": 0.02,
            **run_kw,
        }
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            run(self.settings, self.stop, redis=self.redis, venue=self.venue, **self.run_kw)
        )

    async def finish(self) -> None:
        assert self.task is not None
        self.stop.set()
        await asyncio.wait_for(self.task, 5)

    async def crash(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task

    async def add_signal(self, signal: Signal, *, market: bool = True) -> None:
        """Add ``signal``; ``market`` first writes a trade at its price (the cause of it)."""
        if market and signal.price and signal.symbol in self.settings.symbols:
            await seed_market(self.redis, self.settings, signal.symbol, signal.price)
        await self.redis.xadd(signal_stream(self.settings), signal.to_fields())

    async def start_acked(self, *signals: Signal) -> None:
        """Add ``signals``, start the trader and wait until it acknowledged an order for each."""
        for signal in signals:
            await self.add_signal(signal)
        self.start()
        await until(lambda: self.has_event("ack", len(signals)))

    async def events(self) -> list[dict[str, str]]:
        return await order_events(self.redis, self.settings)

    async def events_named(self, name: str) -> list[dict[str, str]]:
        return [e for e in await self.events() if e["event"] == name]

    async def has_event(self, name: str, n: int = 1) -> bool:
        """Tell whether the orders stream holds ``n`` or more ``name`` entries."""
        return len(await self.events_named(name)) >= n

    async def signals_read(self) -> bool:
        """Tell whether the trader has read and acknowledged every signal so far."""
        return await pending(self.redis, signal_stream(self.settings)) == 0


def test_one_signal_becomes_one_order_then_ack_position_and_health() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue)
        signal = make_signal()
        await h.start_acked(signal)
        health_key = h.settings.keys.health("trader", "trader-test")

        async def health_shows_the_ack() -> bool:
            raw = await h.redis.get(health_key)
            return raw is not None and orjson.loads(raw)["acks"] == 1

        await until(health_shows_the_ack)
        health = orjson.loads(await h.redis.get(health_key))
        assert health["status"] == "ok" and health["orders_sent"] == 1
        assert health["signals_seen"] == 1 and health["positions"] == {"BTCUSDT": "0.001"}
        assert health["last_order_latency_ms"] >= 5.0
        await until(h.signals_read)
        await h.finish()

        cid = client_order_id_for(signal.signal_id)
        assert [p["newClientOrderId"] for p in venue.place_calls] == [cid]
        events = await h.events()
        assert [e["event"] for e in events] == ["intent", "ack"]
        assert events[1]["status"] == "FILLED" and events[1]["order_id"] == "1"
        assert events[1]["source"] == "place"
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"
        intent = orjson.loads(await h.redis.get(h.settings.keys.intent("binance", cid)))
        assert intent["signal_id"] == signal.signal_id and intent["state"]["status"] == "FILLED"
        assert not await h.redis.exists(health_key)  # removed on a clean stop
        assert KEY not in str(events) and SECRET not in str(events)

    asyncio.run(scenario())


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


def test_timeout_on_place_is_resolved_by_status_never_by_resending() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.timeouts_after_accept = 1
        h = Harness(venue)
        await h.start_acked(make_signal())
        await h.finish()
        assert len(venue.place_calls) == 1 and len(venue.orders) == 1
        assert len(venue.status_calls) >= 1
        ack = [e for e in await h.events() if e["event"] == "ack"]
        assert len(ack) == 1 and ack[0]["source"] == "status:ambiguous"
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"

    asyncio.run(scenario())


async def crashed_once_placed(venue: FakeVenue) -> Harness:
    """Start a trader with one signal and crash it once ``venue`` got the place request."""
    h = Harness(venue)
    await h.add_signal(make_signal())
    h.start()
    await until(lambda: len(venue.place_calls) == 1)
    await h.crash()
    return h


def test_crash_after_send_then_restart_places_no_second_order() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.hang_after_accept = True
        h = await crashed_once_placed(venue)  # the intent is recorded, the order exists, no ack
        assert [e["event"] for e in await h.events()] == ["intent"]
        assert await pending(h.redis, signal_stream(h.settings)) == 1

        venue.hang_after_accept = False
        h.start()
        await until(lambda: h.has_event("ack"))
        await until(h.signals_read)
        await h.finish()
        assert len(venue.place_calls) == 1 and len(venue.orders) == 1
        # The reconciliation at start looks the order up before the signal is read again; the
        # signal then finds its outcome recorded: nothing is sent or looked up for it.
        events = [e for e in await h.events() if e["event"] != "discrepancy"]
        assert [e["event"] for e in events] == ["intent", "ack"]
        assert events[1]["source"] == "status:reconcile:start"
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"

    asyncio.run(scenario())


async def _executed_once_placed_again(h: Harness, venue: FakeVenue) -> None:
    """Wait for the ack; then: two requests, one order at the venue, the position its fill."""
    await until(lambda: h.has_event("ack"), timeout_s=15)
    await until(h.signals_read)
    await h.finish()
    assert len(venue.place_calls) == 2 and list(venue.orders) == [
        client_order_id_for(make_signal().signal_id)
    ]
    events = [e["event"] for e in await h.events() if e["event"] != "discrepancy"]
    assert events == ["intent", "placed_again", "ack"]
    assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"


def test_crash_before_the_venue_got_it_places_the_decision_once_on_restart() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.hang_before_accept = True
        h = await crashed_once_placed(venue)  # the venue never got it: no order there
        venue.hang_before_accept = False
        h.start()
        # The decision is executed once: looked up at start, found missing past the receive
        # window (no copy can arrive), placed again under the same id, once.
        await _executed_once_placed_again(h, venue)

    asyncio.run(scenario())


def test_an_unanswered_request_is_looked_up_after_the_window_and_placed_once() -> None:
    """The venue never executes nor answers the first request; the trader stays up."""

    async def scenario() -> None:
        venue = FakeVenue()
        venue.hang_before_accept = True
        h = Harness(venue)  # recv_window_ms 100: no copy is accepted 1.1 s after its stamp
        await h.add_signal(make_signal())
        h.start()
        await until(lambda: len(venue.place_calls) == 1)
        venue.hang_before_accept = False  # the first request stays unanswered for ever
        await _executed_once_placed_again(h, venue)

    asyncio.run(scenario())


def test_a_decision_placed_again_then_lost_again_is_not_placed_a_third_time() -> None:
    """The mark that it was placed again lives with the intent in Redis, not in one process."""

    async def scenario() -> None:
        venue = FakeVenue()
        venue.hang_before_accept = True
        h = await crashed_once_placed(venue)
        h.start()  # the venue still never gets it: placed again, then the trader dies again
        await until(lambda: len(venue.place_calls) == 2, timeout_s=15)
        await h.crash()
        venue.hang_before_accept = False
        h.start()
        await until(lambda: h.has_event("not_found"), timeout_s=15)
        await until(h.signals_read)
        await h.finish()
        assert len(venue.place_calls) == 2 and venue.orders == {}
        events = [e["event"] for e in await h.events() if e["event"] != "discrepancy"]
        assert events == ["intent", "placed_again", "not_found"]
        [letter] = [decode_fields(f) for _, f in await h.redis.xrange(
            h.settings.keys.trader_dead_letters("binance"))]  # fmt: skip
        assert letter["client_order_id"] == client_order_id_for(make_signal().signal_id)
        assert "decision not executed" in letter["reason"]

    asyncio.run(scenario())


def test_duplicate_answer_is_resolved_by_status() -> None:
    async def scenario() -> None:
        venue = FakeVenue(status="NEW")
        h = Harness(venue)
        cid = client_order_id_for(make_signal().signal_id)
        venue.orders[cid] = {"orderId": 77, "status": "NEW", "executedQty": "0", "origQty": "0.001"}
        await h.start_acked(make_signal())
        await h.finish()
        assert len(venue.place_calls) == 1 and len(venue.status_calls) == 1
        ack = next(e for e in await h.events() if e["event"] == "ack")
        assert ack["order_id"] == "77" and ack["source"] == "status:ambiguous"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("limits", "error", "stage"),
    [
        (RiskLimits(kill_switch=True), None, "risk"),
        (None, {"code": -2010, "msg": "Account has insufficient balance."}, "venue"),
    ],
)
def test_refused_signals_are_recorded_and_acknowledged(
    limits: RiskLimits | None, error: dict[str, Any] | None, stage: str
) -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        venue.place_error = error
        h = Harness(venue, limits=limits)
        await h.add_signal(make_signal())
        h.start()
        await until(lambda: h.has_event("rejected"))
        await until(h.signals_read)
        await h.finish()
        rejected = [e for e in await h.events() if e["event"] == "rejected"]
        assert len(rejected) == 1 and rejected[0]["stage"] == stage and rejected[0]["reason"]
        assert len(venue.place_calls) == (1 if stage == "venue" else 0)

    asyncio.run(scenario())


def update_for(cid: str, status: str, filled: str, seq: int) -> OrderUpdate:
    return build_order_update(
        client_order_id=cid,
        status=status,
        exec_type="TRADE" if filled != "0" else "NEW",
        filled_qty=filled,
        last_qty=filled,
        cum_quote="0",
        trade_id=str(seq),
        ts_event=1_700_000_000_000_000_000 + seq,
        ts_recv=1_700_000_000_000_000_000 + seq,
    )


def test_order_updates_move_state_and_position_once() -> None:
    async def scenario() -> None:
        venue = FakeVenue(status="NEW")  # the ack reports nothing filled yet
        h = Harness(venue)
        signal = make_signal()
        cid = client_order_id_for(signal.signal_id)
        await h.start_acked(signal)
        updates = h.settings.keys.order_updates("binance")
        for n, (status, filled) in enumerate(
            [("PARTIALLY_FILLED", "0.0004"), ("FILLED", "0.001"), ("FILLED", "0.001")]
        ):
            await h.redis.xadd(updates, update_for(cid, status, filled, n).to_fields())
        await h.redis.xadd(updates, update_for("someone-else", "FILLED", "5", 9).to_fields())
        await until(lambda: h.has_event("update", 4))
        await until(lambda: _zero(pending(h.redis, updates)))
        await h.finish()
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"
        intent = orjson.loads(await h.redis.get(h.settings.keys.intent("binance", cid)))
        assert intent["state"]["status"] == "FILLED" and intent["state"]["filled_qty"] == "0.001"

        # A restart loads positions and order state: a replayed update counts nothing twice.
        await h.redis.xadd(updates, update_for(cid, "FILLED", "0.001", 10).to_fields())
        h.start()
        await until(lambda: h.has_event("update", 5))
        await h.finish()
        assert await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT") == b"0.001"

    asyncio.run(scenario())


def test_two_signals_across_a_restart_make_two_orders_and_add_up() -> None:
    async def scenario() -> None:
        venue = FakeVenue()
        h = Harness(venue)
        await h.start_acked(make_signal(1))
        await h.finish()
        await h.add_signal(make_signal(2, side="sell", qty="0.0004"))
        await h.add_signal(make_signal(1))  # a duplicate signal entry: no second order
        h.start()
        await until(lambda: h.has_event("ack", 2))
        await until(h.signals_read)
        await h.finish()
        assert len(venue.place_calls) == 2
        position = await h.redis.hget(h.settings.keys.positions("binance"), "BTCUSDT")
        assert Decimal(position.decode()) == Decimal("0.0006")

    asyncio.run(scenario())


def test_missing_credentials_name_both_settings() -> None:
    settings = make_settings(binance_api_key=Secret(""), binance_api_secret=Secret(""))
    with pytest.raises(ConfigError) as caught:
        asyncio.run(run(settings, asyncio.Event(), redis=fakeredis.FakeAsyncRedis()))
    assert "BINANCE_API_KEY" in str(caught.value) and "BINANCE_API_SECRET" in str(caught.value)
