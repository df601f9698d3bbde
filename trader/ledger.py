"""Keep the trader's records in Redis: intents, the ``{V}:orders`` log, order state, positions.

Every key written here is venue-wide (hash tag ``{venue}``), so each change is one ``MULTI`` that
stays legal on Redis Cluster: the ``{V}:orders`` entry, the order's state (kept in its intent key),
the position, and for order updates the XACK of ``{V}:order-updates``. A crash leaves all of a
change or none of it. The in-memory :class:`~trader.core.OrderTracker` adopts a change only once
Redis has it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions as rexc

from common.binance import MS
from common.errors import DecodeError
from common.names import GROUP_TRADER, Keys
from common.schema import OrderIntent, OrderUpdate, decode_fields
from trader.core import OrderState, OrderTracker, advance

__all__ = ["Ledger"]

log = logging.getLogger("tickpipe.trader")

#: A stream entry (``str`` to ``str``; typed loosely because redis-py's XADD is invariant).
Entry = dict[Any, Any]


def _qty_text(qty: Decimal) -> str:
    """Write a quantity as plain decimal text without trailing zeros (``0.0010`` → ``0.001``)."""
    return format(qty.normalize(), "f")


class Ledger:
    """Write and read the trader's records for one venue."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        venue: str,
        *,
        clock: Callable[[], int],
        counts: dict[str, int],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.venue = venue
        self.clock = clock
        self.counts = counts
        self.tracker = OrderTracker()
        self.lock = asyncio.Lock()  # serialises each order-state read-modify-write

    async def load_positions(self) -> None:
        """Read the positions hash into memory."""
        stored = await self.redis.hgetall(self.keys.positions(self.venue))
        self.tracker.positions = {k: Decimal(v) for k, v in decode_fields(stored).items()}

    def positions(self) -> dict[str, str]:
        return {symbol: _qty_text(qty) for symbol, qty in self.tracker.positions.items()}

    async def record_intent(self, intent: OrderIntent) -> OrderIntent | None:
        """Record ``intent`` if it is new and return ``None``; else return the stored intent.

        ``SET NX`` of the intent key and the ``intent`` entry go in one transaction, so an intent
        key never exists without its ``{V}:orders`` entry.
        """
        key = self.keys.intent(self.venue, intent.client_order_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                existing = await pipe.get(key)
                if existing is None:
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, orjson.dumps(intent.to_fields()), nx=True)
                    entry: Entry = {**intent.to_fields(), "event": "intent"}
                    pipe.xadd(self.keys.orders(self.venue), entry)
                    created, _ = await pipe.execute()
                    if created:
                        return None
            except rexc.WatchError:
                pass
        existing = await self.redis.get(key)
        data = orjson.loads(existing) if existing else intent.to_fields()
        return OrderIntent.from_fields({k: v for k, v in data.items() if k != "state"})

    def fields(self, intent: OrderIntent, event: str, extra: dict[str, str]) -> Entry:
        """Build one ``{V}:orders`` entry about ``intent``."""
        return {
            "event": event,
            "client_order_id": intent.client_order_id,
            "signal_id": intent.signal_id,
            "symbol": intent.symbol,
            "side": intent.side,
            "qty": intent.qty,
            "ts": str(self.clock()),
            **extra,
        }

    async def record(self, intent: OrderIntent, event: str, extra: dict[str, str]) -> None:
        """Append one ``{V}:orders`` entry (``rejected``, ``not_found``, ``unknown``...)."""
        self.counts["rejects"] += event == "rejected"
        log.info("order %s", event, extra={"client_order_id": intent.client_order_id, **extra})
        await self.redis.xadd(self.keys.orders(self.venue), self.fields(intent, event, extra))

    async def _state(self, client_order_id: str) -> tuple[OrderState | None, dict[str, Any]]:
        """Return the order's state (memory, else its intent key) and the stored intent."""
        raw = await self.redis.get(self.keys.intent(self.venue, client_order_id))
        stored: dict[str, Any] = orjson.loads(raw) if raw else {}
        state = self.tracker.orders.get(client_order_id)
        if state is None and "state" in stored:
            state = OrderState.from_dict(stored["state"])
        elif state is None and stored:
            state = OrderState(
                client_order_id,
                str(stored["symbol"]),
                str(stored["side"]),
                qty=str(stored.get("qty", "0")),
            )
        return state, stored

    async def _commit(
        self,
        state: OrderState,
        stored: dict[str, Any],
        delta: Decimal,
        fields: Entry,
        ack: tuple[str, str] | None = None,
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.orders(self.venue), fields)
            pipe.set(
                self.keys.intent(self.venue, state.client_order_id),
                orjson.dumps({**stored, "state": state.to_dict()}),
            )
            if delta:
                position = self.tracker.position(state.symbol) + delta
                pipe.hset(self.keys.positions(self.venue), state.symbol, _qty_text(position))
            if ack is not None:
                pipe.xack(ack[0], GROUP_TRADER, ack[1])
            await pipe.execute()
        self.tracker.commit(state, delta)

    async def record_result(
        self, intent: OrderIntent, result: dict[str, Any], *, source: str
    ) -> None:
        """Record the venue's order (an ``ack`` entry) and apply its fills to the position."""
        async with self.lock:
            state, stored = await self._state(intent.client_order_id)
            if state is None:
                state = OrderState(
                    intent.client_order_id, intent.symbol, intent.side, qty=intent.qty
                )
            status = str(result.get("status", ""))
            state, delta = advance(
                state,
                status=status,
                filled_qty=str(result.get("executedQty", "0")),
                order_id=str(result.get("orderId", "")),
                qty=str(result.get("origQty", "")),
                ts_event=int(result.get("transactTime", 0) or 0) * MS,
            )
            fills = result.get("fills")
            extra = {
                "source": source,
                "order_id": state.order_id,
                "status": status,
                "executed_qty": str(result.get("executedQty", "")),
                "cum_quote": str(result.get("cummulativeQuoteQty", "")),
                "fills": orjson.dumps(fills).decode() if fills else "",
            }
            fields = self.fields(intent, "ack", extra)
            await self._commit(state, stored or intent.to_fields(), delta, fields)
        self.counts["acks"] += 1
        log.info("order ack", extra={"client_order_id": intent.client_order_id, "status": status})

    async def record_update(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Record one order update, move its order's state and position, and XACK it, at once.

        Updates for orders this trader did not place are recorded but move no position.
        """
        self.counts["updates"] += 1
        record: Entry = {**decode_fields(fields), "event": "update"}
        try:
            update: OrderUpdate | None = OrderUpdate.from_fields(fields)
        except DecodeError as exc:
            log.warning("bad order update recorded as is", extra={"error": str(exc)})
            update = None
        async with self.lock:
            state: OrderState | None = None
            stored: dict[str, Any] = {}
            if update is not None:
                state, stored = await self._state(update.client_order_id)
            if update is None or state is None:
                self.counts["foreign_updates"] += update is not None
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(self.keys.orders(self.venue), record)
                    pipe.xack(stream, GROUP_TRADER, entry_id)
                    await pipe.execute()
                return
            state, delta = advance(
                state,
                status=update.status,
                filled_qty=update.filled_qty,
                order_id=update.order_id,
                qty=update.qty,
                ts_event=update.ts_event,
            )
            await self._commit(state, stored, delta, record, ack=(stream, entry_id))
