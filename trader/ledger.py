"""Keep the trader's records in Redis: intents, the ``{V}:orders`` log, order state, positions.

Every write is fenced by the account's lease (:mod:`trader.fence`): a trader that lost its lease
writes nothing. Every key written here is venue-wide (hash tag ``{venue}``), so each change is one
script call (or one ``MULTI``) that stays legal on Redis Cluster: the ``{V}:orders`` entry, the
order's state (kept in its intent key), the working-orders set, the position fields, and for
order updates the XACK of ``{V}:order-updates``. A crash leaves all of a change or none of it.

Positions are derived from fills, never written from memory: a change that moves a position
carries the order's stored state and the position's stored fields as preconditions; the
position after the fill is computed from exactly those values, and if Redis holds anything else
by the time the change arrives (an earlier owner, an operator, a lost write), the change is
refused, both are read again and the fill is applied to what Redis holds. A fill is applied once
per order (:func:`trader.orders.advance`: cumulative quantities and venue fill ids).

A new intent is recorded in one round trip by :class:`trader.intents.IntentRecorder`; an order
the venue has and Redis lost is adopted by :meth:`Ledger.adopt`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson
import redis.asyncio as aioredis

from tickpipe.common.contract import OrderEvent, OrderRecord
from tickpipe.common.errors import RedisUnavailable
from tickpipe.common.names import GROUP_TRADER, Keys
from tickpipe.common.schema import OrderIntent, OrderUpdate, decode_fields, text_of
from tickpipe.common.units import MS
from tickpipe.trader.actions import ApplyUpdate
from tickpipe.trader.fence import Change, Fence, Stale
from tickpipe.trader.intents import IntentRecorder
from tickpipe.trader.lease import Lease
from tickpipe.trader.orders import Fill, OrderState, OrderTracker, advance
from tickpipe.trader.positions import Position, PositionBook, qty_text
from tickpipe.trader.risk import to_decimal

__all__ = ["Ledger"]

log = logging.getLogger("tickpipe.trader")

#: A stream entry (``str`` to ``str``; typed loosely because redis-py's XADD is invariant).
Entry = dict[Any, Any]
#: A report applied to an order's state: the state after it and the position change.
Step = Callable[[OrderState], tuple[OrderState, Fill]]

_INTENT_FIELDS = frozenset(f.name for f in dataclasses.fields(OrderIntent))
#: Position fields a fill changes, checked before each change: ``SYMBOL``, ``SYMBOL:avg_cost``...
_CHECKED = ("", "avg_cost", "realized_pnl")
_ATTEMPTS = 5
#: The intent key's field (and the ``placed_again`` entry's) saying when it was placed again.
_PLACED_AGAIN = "placed_again_ns"


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return text_of(value)


def _intent_of(data: Mapping[str, Any]) -> OrderIntent:
    return OrderIntent.from_fields({k: v for k, v in data.items() if k in _INTENT_FIELDS})


def _flat(fields: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in fields.items():
        out += (str(name), str(value))
    return out


def _field(symbol: str, part: str) -> str:
    return f"{symbol}:{part}" if part else symbol


@dataclasses.dataclass(eq=False)
class Ledger:
    """Write and read the trader's records for one venue, fenced by ``lease``."""

    redis: aioredis.Redis
    keys: Keys
    venue: str
    _: dataclasses.KW_ONLY
    clock: Callable[[], int]
    counts: dict[str, int]
    lease: Lease
    #: The core's orders and positions (its own when none is given).
    tracker: OrderTracker = dataclasses.field(default_factory=OrderTracker)
    fence: Fence = dataclasses.field(init=False)
    lease_key: str = dataclasses.field(init=False)
    #: Each symbol's checked position fields as Redis holds them (``None``: absent).
    stored: dict[str, dict[str, str | None]] = dataclasses.field(init=False, default_factory=dict)
    #: Serialises each order-state read-modify-write.
    lock: asyncio.Lock = dataclasses.field(init=False, default_factory=asyncio.Lock)
    intents: IntentRecorder = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        lease = self.lease
        self.fence = lease.fence
        self.lease_key = lease.account_key
        self.intents = IntentRecorder(
            self.redis,
            self.keys,
            self.venue,
            token=lease.token,
            lease_key=lease.account_key,
            link=lease.fence.link,
        )

    # -- loading ---------------------------------------------------------------------------------
    async def load(self) -> None:
        """Read the positions and the state of every working order into memory."""
        await self.reload_positions()
        self.tracker.orders = {}
        for cid in await self.working_ids():
            state, _ = await self._read(cid)
            if state is not None:
                self.tracker.orders[cid] = state

    async def reload_positions(self) -> None:
        """Read the positions hash again (it is the truth; memory follows it)."""
        fields = decode_fields(await self.redis.hgetall(self.keys.positions(self.venue)))
        self.tracker.book = PositionBook.from_fields(fields)
        symbols = {name.partition(":")[0] for name in fields}
        self.stored = {s: {p: fields.get(_field(s, p)) for p in _CHECKED} for s in symbols}

    async def working_ids(self) -> list[str]:
        """Return the client order ids in the working-orders set."""
        members = await self.redis.smembers(self.keys.working_orders(self.venue))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def stored_intent(self, client_order_id: str) -> OrderIntent | None:
        """Return the recorded intent of ``client_order_id``, if there is one."""
        raw = await self.redis.get(self.keys.intent(self.venue, client_order_id))
        return _intent_of(orjson.loads(raw)) if raw else None

    async def placed_again_at(self, client_order_id: str) -> int:
        """Return when the order was placed again after the venue had none (ns), or 0."""
        raw = await self.redis.get(self.keys.intent(self.venue, client_order_id))
        stored: dict[str, Any] = orjson.loads(raw) if raw else {}
        return int(stored.get(_PLACED_AGAIN) or 0)

    async def unknown_intents(self, client_order_ids: list[str]) -> list[str]:
        """Return the ids among ``client_order_ids`` that have no intent key (one round trip)."""
        if not client_order_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in client_order_ids:
                pipe.exists(self.keys.intent(self.venue, cid))
            found = await pipe.execute()
        return [cid for cid, n in zip(client_order_ids, found, strict=True) if not n]

    def positions(self) -> dict[str, str]:
        return {s: qty_text(p.qty) for s, p in sorted(self.tracker.book.positions.items())}

    # -- intents ---------------------------------------------------------------------------------
    async def record_intent(
        self, intent: OrderIntent, *, meanwhile: Callable[[], object] | None = None
    ) -> OrderIntent | None:
        """Record ``intent`` if it is new and return ``None``; else return the stored intent.

        ``SET NX`` of the intent key, the ``intent`` entry and the working-orders membership are
        one atomic step, fenced by the lease (:class:`~trader.intents.IntentRecorder`: a script,
        else a transaction), so an intent key never exists without its ``{V}:orders`` entry, and
        a recorded intent is durable before anything is sent. ``meanwhile`` (pure work, e.g.
        signing the order) is called once, while Redis answers when it can be.
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
        """Build one ``{V}:orders`` entry about ``intent`` (an ``OrderRecord``)."""
        return OrderRecord.about(intent, event, self.clock(), extra).to_fields()

    async def record(
        self, intent: OrderIntent, event: str, extra: Mapping[str, str], *, settle: bool = False
    ) -> None:
        """Append one ``{V}:orders`` entry (``rejected``, ``not_found``, ``unknown``...).

        ``settle`` also takes the order off the working set (it certainly does not exist) and
        marks the intent with the outcome. An intent Redis no longer holds (lost with a cut AOF
        tail while the order was being looked up) is written back from memory, with a warning:
        the same decision read again must meet it, not be sent a second time.
        """
        self.counts["rejects"] += event == OrderEvent.REJECTED
        log.info("order %s", event, extra={"client_order_id": intent.client_order_id, **extra})
        key = self.keys.intent(self.venue, intent.client_order_id)
        # What the intent key keeps of this entry: a settlement, or when it was placed again
        # (a restarted trader must not place it a third time: ``TraderCore.on_lookup``).
        mark: dict[str, str] = {"resolution": event} if settle else {}
        if event == OrderEvent.PLACED_AGAIN:
            mark[_PLACED_AGAIN] = extra[_PLACED_AGAIN]
        raw = None
        for _ in range(_ATTEMPTS):
            change = Change(self.lease_key)
            change.write(
                "XADD", self.keys.orders(self.venue), "*", *_flat(self.fields(intent, event, extra))
            )
            if settle:
                change.write("SREM", self.keys.working_orders(self.venue), intent.client_order_id)
            if mark:
                raw = _text(await self.redis.get(key))
                change.check(key, raw)
                base = orjson.loads(raw) if raw else intent.to_fields()
                change.write("SET", key, orjson.dumps({**base, **mark}).decode())
            try:
                await self.fence.apply(change)
                break
            except Stale:
                continue
        else:
            raise RedisUnavailable(f"order {intent.client_order_id}: its record kept changing")
        if settle:
            self.tracker.orders.pop(intent.client_order_id, None)
            if not raw:
                self.counts["intents_restored"] += 1
                log.warning(
                    "intent lost by Redis written back with its outcome",
                    extra={"client_order_id": intent.client_order_id, "outcome": event},
                )

    async def record_event(self, event: str, fields: Mapping[str, str]) -> None:
        """Append a free-form ``{V}:orders`` entry (``discrepancy``, ``kill_switch``...)."""
        entry: Entry = {"event": event, "ts": str(self.clock()), **fields}
        change = Change(self.lease_key).write(
            "XADD", self.keys.orders(self.venue), "*", *_flat(entry)
        )
        await self.fence.apply(change)

    async def dead_letter(self, fields: Mapping[str, str]) -> None:
        """Append an entry to the trader's dead letters (``{V}:trader-dead-letters``)."""
        entry: Entry = {"ts": str(self.clock()), **fields}
        stream = self.keys.trader_dead_letters(self.venue)
        await self.fence.apply(Change(self.lease_key).write("XADD", stream, "*", *_flat(entry)))

    # -- order state -----------------------------------------------------------------------------
    async def _read(self, client_order_id: str) -> tuple[OrderState | None, str | None]:
        """Return the order's state as Redis holds it (its intent key) and the raw value."""
        raw = _text(await self.redis.get(self.keys.intent(self.venue, client_order_id)))
        if raw is None:
            return None, None
        stored: dict[str, Any] = orjson.loads(raw)
        if "state" in stored:
            return OrderState.from_dict(stored["state"]), raw
        return (
            OrderState(
                client_order_id,
                str(stored["symbol"]),
                str(stored["side"]),
                qty=str(stored.get("qty", "0")),
                price=str(stored.get("price", "") or ""),
            ),
            raw,
        )

    async def outcome_known(self, client_order_id: str) -> bool:
        """Whether the order's outcome is recorded: the venue's id for it, or a settlement."""
        raw = await self.redis.get(self.keys.intent(self.venue, client_order_id))
        stored: dict[str, Any] = orjson.loads(raw) if raw else {}
        state = stored.get("state") or {}
        return bool(stored.get("resolution") or state.get("order_id"))

    async def order_state(self, client_order_id: str) -> OrderState | None:
        """Return what is known of the order with ``client_order_id``."""
        state, _ = await self._read(client_order_id)
        return state

    def _fallback_price(self, state: OrderState, reported: str = "") -> Decimal | None:
        for text in (reported, state.price):
            price = to_decimal(text)
            if price is not None and price > 0:
                return price
        return self.tracker.book.get(state.symbol).mark_price

    def _move(self, change: Change, symbol: str, fill: Fill) -> Position:
        """Add the position write of ``fill`` to ``change``, checked against what Redis holds."""
        key = self.keys.positions(self.venue)
        stored = self.stored.get(symbol, dict.fromkeys(_CHECKED))
        for part in _CHECKED:
            change.check(key, stored.get(part), field=_field(symbol, part))
        position = self.tracker.book.get(symbol).fill(fill.qty, fill.quote)
        change.write("HSET", key, *_flat(PositionBook.fields(symbol, position)))
        return position

    def _moved(self, symbol: str, position: Position) -> None:
        self.tracker.book.positions[symbol] = position
        written = PositionBook.fields(symbol, position)
        self.stored[symbol] = {p: written[_field(symbol, p)] for p in _CHECKED}

    async def _commit(
        self,
        client_order_id: str,
        step: Step,
        entry: Callable[[OrderState], Entry],
        *,
        fallback: OrderIntent | None = None,
        ack: tuple[str, str] | None = None,
    ) -> OrderState | None:
        """Apply ``step`` to the order's stored state and write the result, fenced, at once.

        The change holds the ``{V}:orders`` entry, the order's state, its working-set
        membership, the position change and the XACK of ``ack``; it is written only if the
        order's state and the position are still what the step started from (else both are read
        again). ``fallback`` is the intent to start from when Redis has none; without it an
        unknown order gives ``None`` and nothing is written.
        """
        key = self.keys.intent(self.venue, client_order_id)
        for _ in range(_ATTEMPTS):
            state, raw = await self._read(client_order_id)
            if state is None and fallback is None:
                return None
            if state is None:
                assert fallback is not None
                state = self._fresh(fallback)
            state, fill = step(state)
            base = orjson.loads(raw) if raw else fallback.to_fields() if fallback else {}
            change = Change(self.lease_key).check(key, raw)
            change.write("XADD", self.keys.orders(self.venue), "*", *_flat(entry(state)))
            change.write("SET", key, orjson.dumps({**base, "state": state.to_dict()}).decode())
            working = self.keys.working_orders(self.venue)
            change.write("SREM" if state.terminal else "SADD", working, client_order_id)
            position = self._move(change, state.symbol, fill) if fill else None
            if ack is not None:
                change.write("XACK", ack[0], GROUP_TRADER, ack[1])
            try:
                await self.fence.apply(change)
            except Stale:
                await self.reload_positions()
                continue
            self.tracker.orders[client_order_id] = state
            if position is not None:
                self._moved(state.symbol, position)
            return state
        raise RedisUnavailable(f"order {client_order_id}: its state kept changing")

    async def record_result(
        self,
        intent: OrderIntent,
        result: dict[str, Any],
        *,
        source: str,
        event: str = OrderEvent.ACK,
    ) -> OrderState:
        """Record the venue's order (an ``ack`` entry) and apply its fills to the position."""
        status = str(result.get("status", ""))
        fills = result.get("fills")
        last_price = ""
        if isinstance(fills, list) and fills and isinstance(fills[-1], Mapping):
            last_price = str(fills[-1].get("price", ""))
        ts_ms = result.get("transactTime") or result.get("updateTime") or 0

        def step(state: OrderState) -> tuple[OrderState, Fill]:
            return advance(
                state,
                status=status,
                filled_qty=str(result.get("executedQty", "0")),
                order_id=str(result.get("orderId", "")),
                qty=str(result.get("origQty", "")),
                ts_event=int(ts_ms) * MS if isinstance(ts_ms, int) else 0,
                cum_quote=str(result.get("cummulativeQuoteQty", "")),
                fallback_price=self._fallback_price(state, last_price),
            )

        def entry(state: OrderState) -> Entry:
            extra = {
                "source": source,
                "order_id": state.order_id,
                "status": status,
                "executed_qty": str(result.get("executedQty", "")),
                "cum_quote": str(result.get("cummulativeQuoteQty", "")),
                "fills": orjson.dumps(fills).decode() if fills else "",
            }
            return self.fields(intent, event, extra)

        async with self.lock:
            state = await self._commit(intent.client_order_id, step, entry, fallback=intent)
        assert state is not None
        self.counts["acks"] += event == OrderEvent.ACK
        log.info(
            "order %s", event, extra={"client_order_id": intent.client_order_id, "status": status}
        )
        return state

    async def apply_update(self, stream: str, entry_id: str, action: ApplyUpdate) -> None:
        """Record one order update, move its order's state and position, and XACK it, at once.

        The core decided how (:meth:`trader.core.TraderCore.on_update`); updates for orders
        this trader did not place, or that did not decode, are recorded but move no position.
        """
        update: OrderUpdate | None = action.update
        record: Entry = dict(action.record)
        if update is None:
            log.warning("bad order update recorded as is", extra={"entry_id": entry_id})
        async with self.lock:
            state = None
            if update is not None:
                found = update

                def step(state: OrderState) -> tuple[OrderState, Fill]:
                    return advance(
                        state,
                        status=found.status,
                        filled_qty=found.filled_qty,
                        order_id=found.order_id,
                        qty=found.qty,
                        ts_event=found.ts_event,
                        cum_quote=found.cum_quote,
                        fallback_price=self._fallback_price(state, found.last_price),
                        fill_id=found.trade_id,
                        last_qty=found.last_qty,
                    )

                state = await self._commit(
                    update.client_order_id, step, lambda _: record, ack=(stream, entry_id)
                )
            if state is None:
                self.counts["foreign_updates"] += update is not None
                change = Change(self.lease_key)
                change.write("XADD", self.keys.orders(self.venue), "*", *_flat(record))
                change.write("XACK", stream, GROUP_TRADER, entry_id)
                await self.fence.apply(change)

    # -- adoption --------------------------------------------------------------------------------
    async def adopt(self, intent: OrderIntent, order: Mapping[str, Any], *, reason: str) -> bool:
        """Record an order the venue has and Redis does not, with its fills; never send it.

        Written only if its intent key is still absent (an intent recorded meanwhile means it
        was no orphan); returns whether the order was adopted.
        """
        key = self.keys.intent(self.venue, intent.client_order_id)
        status = str(order.get("status", ""))
        extra = {
            "source": "reconcile",
            "reason": reason,
            "order_id": str(order.get("orderId", "")),
            "status": status,
            "executed_qty": str(order.get("executedQty", "")),
            "cum_quote": str(order.get("cummulativeQuoteQty", "")),
        }
        async with self.lock:
            for _ in range(_ATTEMPTS):
                fresh = self._fresh(intent)
                state, fill = advance(
                    fresh,
                    status=status,
                    filled_qty=extra["executed_qty"],
                    order_id=extra["order_id"],
                    qty=str(order.get("origQty", "")),
                    cum_quote=extra["cum_quote"],
                    fallback_price=self._fallback_price(fresh),
                )
                stored = {**intent.to_fields(), "adopted": reason, "state": state.to_dict()}
                change = Change(self.lease_key).check(key, None)
                change.write("SET", key, orjson.dumps(stored).decode())
                entry = self.fields(intent, OrderEvent.ADOPTED, extra)
                change.write("XADD", self.keys.orders(self.venue), "*", *_flat(entry))
                working = self.keys.working_orders(self.venue)
                change.write("SREM" if state.terminal else "SADD", working, intent.client_order_id)
                position = self._move(change, state.symbol, fill) if fill else None
                try:
                    await self.fence.apply(change)
                except Stale:
                    if await self.redis.exists(key):
                        return False
                    await self.reload_positions()
                    continue
                if not state.terminal:
                    self.tracker.orders[intent.client_order_id] = state
                if position is not None:
                    self._moved(state.symbol, position)
                return True
        raise RedisUnavailable(f"order {intent.client_order_id}: the positions kept changing")

    # -- marks -----------------------------------------------------------------------------------
    async def mark(self, prices: Mapping[str, Decimal]) -> None:
        """Set each symbol's mark price (last trade) and write its unrealised profit."""
        async with self.lock:  # never write a mark older than a concurrent commit's
            changed: Entry = {}
            marked: dict[str, Position] = {}
            for symbol, price in prices.items():
                position = self.tracker.book.get(symbol)
                if position.mark_price == price:
                    continue
                marked[symbol] = dataclasses.replace(position, mark_price=price)
                fields = PositionBook.fields(symbol, marked[symbol])
                for part in ("unrealized_pnl", "mark_price"):
                    changed[_field(symbol, part)] = fields[_field(symbol, part)]
            if changed:
                key = self.keys.positions(self.venue)
                await self.fence.apply(Change(self.lease_key).write("HSET", key, *_flat(changed)))
                self.tracker.book.positions.update(marked)
