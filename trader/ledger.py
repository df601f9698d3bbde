"""Keep the trader's records in Redis: intents, the ``{V}:orders`` log, order state, positions.

Every key written here is venue-wide (hash tag ``{venue}``), so each change is one ``MULTI`` (or
one Lua script) that stays legal on Redis Cluster: the ``{V}:orders`` entry, the order's state (kept
in its intent key), the working-orders set, the position fields, and for order updates the XACK of
``{V}:order-updates``. A crash leaves all of a change or none of it. The in-memory
:class:`~trader.orders.OrderTracker` adopts a change only once Redis has it.

A new intent is recorded in one round trip by :class:`trader.intents.IntentRecorder`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.binance import MS
from common.errors import DecodeError
from common.names import GROUP_TRADER, Keys
from common.schema import OrderIntent, OrderUpdate, decode_fields
from trader.intents import IntentRecorder
from trader.orders import Fill, OrderState, OrderTracker, advance
from trader.positions import PositionBook, qty_text
from trader.risk import to_decimal

__all__ = ["Ledger"]

log = logging.getLogger("tickpipe.trader")

#: A stream entry (``str`` to ``str``; typed loosely because redis-py's XADD is invariant).
Entry = dict[Any, Any]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _intent_of(data: Mapping[str, Any]) -> OrderIntent:
    return OrderIntent.from_fields(
        {k: v for k, v in data.items() if k not in ("state", "resolution")}
    )


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
        self.intents = IntentRecorder(redis, keys, venue)

    # -- loading ---------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read the positions and the state of every working order into memory."""
        stored = decode_fields(await self.redis.hgetall(self.keys.positions(self.venue)))
        self.tracker.book = PositionBook.from_fields(stored)
        self.tracker.orders = {}
        for cid in await self.working_ids():
            state, _ = await self._state(cid)
            if state is not None:
                self.tracker.orders[cid] = state

    async def working_ids(self) -> list[str]:
        """Return the client order ids in the working-orders set."""
        members = await self.redis.smembers(self.keys.working_orders(self.venue))
        return sorted(_text(m) for m in members)

    async def stored_intent(self, client_order_id: str) -> OrderIntent | None:
        """Return the recorded intent of ``client_order_id``, if there is one."""
        raw = await self.redis.get(self.keys.intent(self.venue, client_order_id))
        return _intent_of(orjson.loads(raw)) if raw else None

    def positions(self) -> dict[str, str]:
        return {s: qty_text(p.qty) for s, p in sorted(self.tracker.book.positions.items())}

    # -- intents ---------------------------------------------------------------------------------
    async def record_intent(
        self, intent: OrderIntent, *, meanwhile: Callable[[], object] | None = None
    ) -> OrderIntent | None:
        """Record ``intent`` if it is new and return ``None``; else return the stored intent.

        ``SET NX`` of the intent key, the ``intent`` entry and the working-orders membership are
        one atomic step (:class:`~trader.intents.IntentRecorder`: a script, else a transaction),
        so an intent key never exists without its ``{V}:orders`` entry, and a recorded intent is
        durable before anything is sent. ``meanwhile`` (pure work, e.g. signing the order) is
        called once, while Redis answers when it can be.
        """
        stored = await self.intents.record(intent, meanwhile=meanwhile)
        if stored is None:
            self.tracker.orders[intent.client_order_id] = self._fresh(intent)
            return None
        return _intent_of(stored)

    @staticmethod
    def _fresh(intent: OrderIntent) -> OrderState:
        return OrderState(
            intent.client_order_id,
            intent.symbol,
            intent.side,
            qty=intent.qty,
            price=intent.price or "",
        )

    def fields(self, intent: OrderIntent, event: str, extra: Mapping[str, str]) -> Entry:
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

    async def record(
        self, intent: OrderIntent, event: str, extra: Mapping[str, str], *, settle: bool = False
    ) -> None:
        """Append one ``{V}:orders`` entry (``rejected``, ``not_found``, ``unknown``...).

        ``settle`` also takes the order off the working set (it certainly does not exist).
        """
        self.counts["rejects"] += event == "rejected"
        log.info("order %s", event, extra={"client_order_id": intent.client_order_id, **extra})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.orders(self.venue), self.fields(intent, event, extra))
            if settle:
                pipe.srem(self.keys.working_orders(self.venue), intent.client_order_id)
                key = self.keys.intent(self.venue, intent.client_order_id)
                raw = await self.redis.get(key)
                if raw:
                    pipe.set(key, orjson.dumps({**orjson.loads(raw), "resolution": event}))
            await pipe.execute()
        if settle:
            self.tracker.orders.pop(intent.client_order_id, None)

    async def record_event(self, event: str, fields: Mapping[str, str]) -> None:
        """Append a free-form ``{V}:orders`` entry (``discrepancy``, ``kill_switch``...)."""
        entry: Entry = {"event": event, "ts": str(self.clock()), **fields}
        await self.redis.xadd(self.keys.orders(self.venue), entry)

    # -- order state -----------------------------------------------------------------------------
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
                price=str(stored.get("price", "") or ""),
            )
        return state, stored

    async def order_state(self, client_order_id: str) -> OrderState | None:
        """Return what is known of the order with ``client_order_id``."""
        state, _ = await self._state(client_order_id)
        return state

    def _fallback_price(self, state: OrderState, reported: str = "") -> Decimal | None:
        for text in (reported, state.price):
            price = to_decimal(text)
            if price is not None and price > 0:
                return price
        return self.tracker.book.get(state.symbol).mark_price

    async def _commit(
        self,
        state: OrderState,
        stored: dict[str, Any],
        fill: Fill,
        fields: Entry,
        ack: tuple[str, str] | None = None,
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.orders(self.venue), fields)
            pipe.set(
                self.keys.intent(self.venue, state.client_order_id),
                orjson.dumps({**stored, "state": state.to_dict()}),
            )
            if state.terminal:
                pipe.srem(self.keys.working_orders(self.venue), state.client_order_id)
            if fill:
                position = self.tracker.book.get(state.symbol).fill(fill.qty, fill.quote)
                mapping: Entry = PositionBook.fields(state.symbol, position)
                pipe.hset(self.keys.positions(self.venue), mapping=mapping)
            if ack is not None:
                pipe.xack(ack[0], GROUP_TRADER, ack[1])
            await pipe.execute()
        self.tracker.commit(state, fill)

    async def record_result(
        self, intent: OrderIntent, result: dict[str, Any], *, source: str, event: str = "ack"
    ) -> OrderState:
        """Record the venue's order (an ``ack`` entry) and apply its fills to the position."""
        async with self.lock:
            state, stored = await self._state(intent.client_order_id)
            if state is None:
                state = self._fresh(intent)
            status = str(result.get("status", ""))
            fills = result.get("fills")
            last_price = ""
            if isinstance(fills, list) and fills and isinstance(fills[-1], Mapping):
                last_price = str(fills[-1].get("price", ""))
            ts_ms = result.get("transactTime") or result.get("updateTime") or 0
            state, fill = advance(
                state,
                status=status,
                filled_qty=str(result.get("executedQty", "0")),
                order_id=str(result.get("orderId", "")),
                qty=str(result.get("origQty", "")),
                ts_event=int(ts_ms) * MS if isinstance(ts_ms, int) else 0,
                cum_quote=str(result.get("cummulativeQuoteQty", "")),
                fallback_price=self._fallback_price(state, last_price),
            )
            extra = {
                "source": source,
                "order_id": state.order_id,
                "status": status,
                "executed_qty": str(result.get("executedQty", "")),
                "cum_quote": str(result.get("cummulativeQuoteQty", "")),
                "fills": orjson.dumps(fills).decode() if fills else "",
            }
            fields = self.fields(intent, event, extra)
            await self._commit(state, stored or intent.to_fields(), fill, fields)
        self.counts["acks"] += event == "ack"
        log.info(
            "order %s", event, extra={"client_order_id": intent.client_order_id, "status": status}
        )
        return state

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
            state, fill = advance(
                state,
                status=update.status,
                filled_qty=update.filled_qty,
                order_id=update.order_id,
                qty=update.qty,
                ts_event=update.ts_event,
                cum_quote=update.cum_quote,
                fallback_price=self._fallback_price(state, update.last_price),
            )
            await self._commit(state, stored, fill, record, ack=(stream, entry_id))

    # -- marks -----------------------------------------------------------------------------------
    async def mark(self, prices: Mapping[str, Decimal]) -> None:
        """Set each symbol's mark price (last trade) and write its unrealised profit."""
        async with self.lock:  # never write a position older than a concurrent commit's
            changed: Entry = {}
            for symbol, price in prices.items():
                if self.tracker.book.get(symbol).mark_price == price:
                    continue
                position = self.tracker.book.mark(symbol, price)
                changed.update(PositionBook.fields(symbol, position))
            if changed:
                await self.redis.hset(self.keys.positions(self.venue), mapping=changed)
