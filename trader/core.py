"""Decide and follow orders: the trader's pure core (no I/O, no clock, no asyncio).

Everything here takes its inputs as values (time as integer nanoseconds or milliseconds) and returns
values, so the shell in :mod:`trader.shell` only moves data between Redis, the venue and this
module.

* :func:`check_signal` / :class:`RiskLimits` (from :mod:`trader.risk`) say whether a signal may
  become an order.
* :func:`build_intent`, :func:`intent_mismatch`, :func:`is_own_client_order_id` and
  :func:`adopted_intent` (from :mod:`trader.intent_rules`) derive and compare intents.
* A venue's own requests and answers (signing, request params, classifying answers into the
  errors of :mod:`common.errors`) live in its package under :mod:`venues`.
* :class:`OrderTracker` applies order reports to an order state machine and keeps positions.
* :class:`TraderCore` owns the order states and positions (its :class:`OrderTracker`), the
  client order ids with a request under way, the kill switch and the risk limits, and makes
  every decision of a term: ``on_signal``, ``on_recorded``/``on_stored`` (what Redis answered
  to an intent), ``on_answer`` (what the venue answered to a place, lookup or cancel),
  ``on_update``, ``on_kill_switch`` and ``on_tick`` return the actions of
  :mod:`trader.actions`, which the async shell executes in order. A signal that ``replaces``
  a working order gets a ``CancelFirst`` (the shell cancels it, waits for its end and asks
  again with :class:`Replaced`), is placed (in one step where the venue replaces in place),
  or is refused with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from tickpipe.common.contract import OrderEvent
from tickpipe.common.errors import (
    AmbiguousOutcome,
    AuthError,
    DecodeError,
    DuplicateOrder,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    VenueUnavailable,
)
from tickpipe.common.order_spec import LIMIT_PRICED
from tickpipe.common.schema import OrderIntent, OrderUpdate, Signal, decode_fields
from tickpipe.common.settings import Settings
from tickpipe.common.units import MS
from tickpipe.common.venue_clock import SKEW_MARGIN_MS
from tickpipe.trader import actions as act
from tickpipe.trader.intent_rules import (
    adopted_intent,
    build_intent,
    intent_mismatch,
    is_own_client_order_id,
)
from tickpipe.trader.market import MarketView, market_refusal, order_value_price
from tickpipe.trader.orders import ACTIVE, TERMINAL, OrderState, OrderTracker, advance
from tickpipe.trader.risk import RiskLimits, TokenBucket, breach_cancels, check_signal, to_decimal

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "DuplicateOrder",
    "OrderNotFound",
    "OrderRejected",
    "OrderState",
    "OrderTracker",
    "Replaced",
    "RiskLimits",
    "TraderCore",
    "adopted_intent",
    "advance",
    "build_intent",
    "check_signal",
    "discrepancy",
    "intent_mismatch",
    "is_own_client_order_id",
]


#: Fit an intent to the venue: ``(intent, market price or None) -> (intent to send, refusal or
#: None)``; pure (the filters it applies were loaded beforehand by the shell).
Shaper = Callable[[OrderIntent, Decimal | None], tuple[OrderIntent, str | None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Replaced:
    """What the ledger holds of the order a signal ``replaces``: its intent and state, and
    whether its cancel was tried already (then it must have ended)."""

    intent: OrderIntent | None = None
    state: OrderState | None = None
    cancel_tried: bool = False


class InPlace:
    """:meth:`TraderCore._replacing`'s answer when the venue replaces the order in one step."""


IN_PLACE = InPlace()
#: A venue's answer after which a request certainly did nothing: try again.
_NOT_SENT = (VenueUnavailable, RateLimited)
#: Lookup answers that say nothing about the order (counted against ``status_attempts``).
_SAYS_NOTHING = (AmbiguousOutcome, VenueUnavailable, OrderRejected, DuplicateOrder, RateLimited)
#: A cancel of the same order is not sent again within this long (the guard repeats itself).
CANCEL_RETRY_NS = 2_000_000_000
#: The alarms kept in the health record (the newest ones).
MAX_ALARMS = 10


def same_order(state: OrderState, order: Mapping[str, Any]) -> bool:
    """Whether the venue's order says what ``state`` already knows (status and fills)."""
    filled = to_decimal(str(order.get("executedQty", "")))
    return state.status == order.get("status") and filled == to_decimal(state.filled_qty)


def discrepancy(
    cid: str,
    before: OrderState | None,
    after: OrderState | None,
    *,
    reason: str,
    tracked: bool,
) -> dict[str, str] | None:
    """Return the ``discrepancy`` entry a reconciliation found for one order, or None.

    ``before`` is what was recorded, ``after`` what the venue said (None: no such order, or
    still unresolved when ``tracked``).
    """
    if before is None or (after is None and tracked):
        return None  # unknown before, or still unresolved: nothing to compare yet
    if after is not None and (after.status, after.filled_qty) == (before.status, before.filled_qty):
        return None
    return {
        "client_order_id": cid,
        "symbol": before.symbol,
        "kind": "orphan_intent" if after is None else "state_changed",
        "reason": reason,
        "was": f"{before.status} {before.filled_qty}",
        "venue": "none" if after is None else f"{after.status} {after.filled_qty}",
        "terminal": "1" if after is None or after.status in TERMINAL else "0",
    }


class TraderCore:
    """Decide a term's orders: state in, actions out; no I/O, no clock (time comes as ns)."""

    def __init__(
        self,
        limits: RiskLimits,
        settings: Settings | None = None,
        *,
        market: MarketView | None = None,
        counts: dict[str, int] | None = None,
        alarms: list[str] | None = None,
        status_attempts: int = 8,
        recv_window_ms: int = 5000,
        shaper: Shaper | None = None,
    ) -> None:
        """``settings`` give the order type, the order rate and the market's age and band;
        ``shaper`` fits an intent to the venue (order types, instrument filters)."""
        settings = settings if settings is not None else Settings()
        self.limits = limits
        self.tracker = OrderTracker()
        self.market = market if market is not None else MarketView()
        self.counts: dict[str, int] = counts if counts is not None else {}
        self.alarms = alarms if alarms is not None else []
        self.order_type = settings.order_type
        self.max_orders_per_s = settings.max_orders_per_s
        self.bucket = TokenBucket(settings.max_orders_per_s)
        self.max_price_age_ns = int(settings.max_price_age_s * 1e9)
        self.band_bps = Decimal(settings.price_band_bps)
        self.status_attempts = status_attempts
        self.recv_window_ms = recv_window_ms
        self.shaper = shaper
        #: The venue refuses a second order under a client order id it has seen (IBKR's
        #: ``cOID``): an intent it has no order of may then be placed, it cannot become two.
        self.unique_client_ids = False
        #: The order types the venue replaces in one step (Alpaca's ``PATCH``): a working order
        #: of such a type replaced by one of the same type is not cancelled first.
        self.replaces_in_place: frozenset[str] = frozenset()
        #: Intents this run placed again after the venue said it never got them (at most once).
        #: client order id -> when it was placed again (ns): "no such order" soon after is no
        #: proof yet.
        self.placed_again: dict[str, int] = {}
        #: Client order ids with a request under way here (reconciliation leaves them alone).
        self.inflight: set[str] = set()
        self.kill_switch = False
        self.last_order_latency_ms: float | None = None
        self._cancel_tried: dict[str, int] = {}

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    # -- signals ---------------------------------------------------------------------------------
    def on_signal(
        self,
        signal: Signal,
        now_ns: int,
        *,
        market_loaded: bool = False,
        entry: tuple[str, str] | None = None,
        replaced: Replaced | None = None,
    ) -> list[act.Action]:
        """Decide what ``signal`` becomes: record its intent, refuse it, cancel, or wait.

        ``market_loaded``: the symbol's newest market was just read on a :class:`LoadMarket`;
        ``entry`` (signal stream, entry id) names the signal in a dead letter; ``replaced`` is
        what the ledger holds of the order a ``replaces`` signal names (see
        :meth:`_replacing`).
        """
        if signal.action == "cancel":
            self._count("cancel_signals")
            working = [o.client_order_id for o in self.tracker.working(signal.symbol)]
            event = act.RecordEvent(
                "cancel_signal",
                {
                    "signal_id": signal.signal_id,
                    "symbol": signal.symbol,
                    "reason": signal.reason,
                    "orders": ",".join(working),
                },
            )
            why = f"signal {signal.signal_id}"
            return [event, *(act.Cancel(cid, why, wait=True) for cid in working)]
        intent = build_intent(signal, ts_intent=now_ns, order_type=self.order_type)
        cid = intent.client_order_id
        if cid in self.inflight:  # this decision's request is under way here
            return [act.Await(cid)]
        if signal.replaces:
            refused = self._replacing(signal, intent, replaced or Replaced())
            if isinstance(refused, InPlace):
                self._count("replaces")
                intent = dataclasses.replace(intent, in_place=True)
            elif isinstance(refused, act.CancelFirst):
                self._count("replaces")
                return [refused]
            elif refused is not None:
                self._count("replace_refusals")
                return [act.Reject(intent, refused, stage="replace"),
                        self._letter(signal, intent, refused, entry)]  # fmt: skip
        if self.shaper is not None:  # the venue's order types and instrument filters
            market = self.market.price(signal.symbol, signal.side)
            intent, refused = self.shaper(intent, market.price if market is not None else None)
            if refused is not None:
                letter = self._letter(signal, intent, refused, entry)
                return [act.Reject(intent, refused, stage="order"), letter]
        reason, load = self._refusal(signal, intent, now_ns, market_loaded=market_loaded)
        if load:
            return [act.LoadMarket(signal.symbol)]
        if reason is not None:
            cancels: list[act.Action] = []
            if reason.startswith(("position limit", "kill switch")):
                cancels = [*self.breach_cancels(signal.symbol)]
            return [act.Reject(intent, reason), *cancels]
        self.inflight.add(cid)
        return [act.RecordIntent(intent)]

    @staticmethod
    def _letter(
        signal: Signal, intent: OrderIntent, reason: str, entry: tuple[str, str] | None
    ) -> act.DeadLetter:
        return act.DeadLetter(
            {
                "reason": reason,
                "client_order_id": intent.client_order_id,
                "signal_id": signal.signal_id,
                "stream": entry[0] if entry is not None else "",
                "entry_id": entry[1] if entry is not None else "",
                "signal": orjson.dumps(signal.to_fields()).decode(),
            }
        )

    def _replacing(
        self, signal: Signal, intent: OrderIntent, replaced: Replaced
    ) -> str | act.CancelFirst | InPlace | None:
        """Decide about a signal that replaces an order: go on (``None``), cancel that order
        first, or why not (the reason names the order).

        The order must be this trader's, of the signal's strategy and symbol. A working one is
        replaced in one step where the venue can (``replaces_in_place``: the placer sends the
        venue's replace), else cancelled first (:class:`~trader.actions.CancelFirst`); the new
        order is placed only once
        the old one has ended without filling whole: cancelled, expired or rejected (what it
        filled before stays filled, and in the positions). A filled one is not replaced, and one
        whose cancel is not confirmed (``replaced.cancel_tried``) is not replaced either: never
        two live orders where the strategy wanted one.
        """
        old_cid = intent.replaces
        what = f"replaces {signal.replaces}"
        old, state = replaced.intent, replaced.state
        if old is None:
            return f"{what}: no order of that id here"
        if old.symbol != signal.symbol or old.side.lower() != signal.side.lower():
            return f"{what}: that order is a {old.side} of {old.symbol}, not a {signal.side} of "\
                   f"{signal.symbol}"  # fmt: skip
        if old.strategy != signal.strategy:
            return f"{what}: that order is strategy {old.strategy or 'unknown'}'s, not " \
                   f"{signal.strategy}'s"  # fmt: skip
        if state is None or not state.terminal:
            if (
                state is not None
                and old.order_type == intent.order_type
                and intent.order_type in self.replaces_in_place
                and not replaced.cancel_tried
            ):
                return IN_PLACE  # the venue replaces it in one step (the placer sends it)
            if replaced.cancel_tried:
                status = state.status if state is not None else "unknown"
                return f"{what}: its cancel is not confirmed (still {status}); nothing placed"
            return act.CancelFirst(old_cid, f"replaced by signal {signal.signal_id}")
        if state.status == "FILLED":
            return f"{what}: that order filled before it could be replaced; nothing placed"
        return None

    def _refusal(
        self, signal: Signal, intent: OrderIntent, now_ns: int, *, market_loaded: bool
    ) -> tuple[str | None, bool]:
        """Return why ``signal`` may not become an order (or None) and whether to load prices."""
        if intent.order_type in LIMIT_PRICED and not (to_decimal(signal.price) or 0) > 0:
            return (
                f"a {intent.order_type} order needs the signal's price, got {signal.price!r}",
                False,
            )
        position = self.tracker.position(signal.symbol)
        working = [  # the order this one replaces will not work alongside it
            o.working()
            for o in self.tracker.working(signal.symbol)
            if o.client_order_id != intent.replaces
        ]
        unpriced = dataclasses.replace(self.limits, max_notional=None)
        reason = check_signal(
            signal, unpriced, position=position, working=working, kill_switch=self.kill_switch
        )
        if reason is not None:
            return reason, False
        market = self.market.price(signal.symbol, signal.side)
        # The signal's price, and a stop order's trigger too, must lie in the band.
        banded = [(signal.price, "signal price")]
        if signal.stop_price:
            banded.append((signal.stop_price, "stop price"))
        reason = None
        for price, what in banded:
            reason = reason or market_refusal(
                signal.symbol,
                price,
                market,
                now_ns=now_ns,
                max_age_ns=self.max_price_age_ns,
                band_bps=self.band_bps,
                what=what,
            )
        if (
            reason is not None
            and not market_loaded
            and (market is None or market.ts_recv < signal.ts_recv)
        ):
            # The view (refreshed in the background) is older than the signal's own trade, so
            # it may lag a fast move: read the symbol's newest market once, then decide.
            return None, True
        if reason is not None or market is None:
            self._count("market_refusals")
            return reason, False
        value = order_value_price(market, intent.order_type, intent.price, intent.stop_price)
        reason = check_signal(signal, self.limits, position=position, working=working, price=value)
        if reason is None and not self.bucket.take(now_ns):
            reason = f"order rate limit: more than {self.max_orders_per_s:g} per second"
        return reason, False

    def on_recorded(self, intent: OrderIntent, stored: OrderIntent | None) -> list[act.Action]:
        """Redis answered the intent's record: ``None`` if it was new, else the stored intent."""
        if stored is None:
            return [act.Send(intent)]  # in flight until the venue answers
        self.inflight.discard(intent.client_order_id)
        return []  # the shell hands ``stored`` to on_stored

    def on_stored(
        self,
        signal: Signal,
        intent: OrderIntent,
        stored: OrderIntent,
        *,
        outcome_known: bool,
        entry: tuple[str, str] | None = None,
    ) -> list[act.Action]:
        """Decide about an intent an earlier run recorded under the signal's client order id.

        Another decision's intent makes the signal a dead letter and an alarm; one whose outcome
        is recorded needs nothing; else the order is looked up, never sent again.
        """
        cid = stored.client_order_id
        what = intent_mismatch(stored, intent)
        if what is not None:
            self._count("intent_mismatches")
            alarm = f"intent mismatch: {cid}: {what}"
            self.alarms.append(alarm)
            del self.alarms[:-MAX_ALARMS]
            stream, entry_id = entry if entry is not None else ("", "")
            letter = {
                "reason": f"intent mismatch: {what}",
                "client_order_id": cid,
                "signal_id": signal.signal_id,
                "stream": stream,
                "entry_id": entry_id,
                "signal": orjson.dumps(signal.to_fields()).decode(),
                "intent": orjson.dumps(stored.to_fields()).decode(),
            }
            return [act.Alarm(alarm), act.DeadLetter(letter)]
        if outcome_known:
            return []
        self.inflight.add(cid)  # the lookup takes it off at its end
        return [act.Resolve(stored, source="restart")]

    # -- the venue's answers ---------------------------------------------------------------------
    def on_answer(
        self,
        intent: OrderIntent,
        answer: Mapping[str, Any] | Exception,
        *,
        sent_ns: int,
        ts_event: int,
    ) -> list[act.Action]:
        """Decide what the venue's answer to placing ``intent`` (an order, or an error) means."""
        if isinstance(answer, _NOT_SENT):  # refused before it was placed: no order, try again
            if isinstance(answer, RateLimited):
                self._count("rate_limited")
                return [act.Retry(at_least_s=answer.retry_after_s)]
            return [act.Retry()]
        if isinstance(answer, AuthError):
            extra = {"reason": str(answer), "stage": "venue"}
            return [act.Record(intent, OrderEvent.REJECTED, extra, settle=True), act.Fail(answer)]
        if isinstance(answer, Exception) and not isinstance(
            answer, (AmbiguousOutcome, DuplicateOrder, OrderRejected, OrderNotFound)
        ):
            return [act.Fail(answer)]
        self._count("orders_sent")
        self.last_order_latency_ms = round((sent_ns - ts_event) / MS, 3)
        if isinstance(answer, (AmbiguousOutcome, DuplicateOrder)):
            self._count("ambiguous", isinstance(answer, AmbiguousOutcome))
            return [act.Resolve(intent, source="ambiguous")]
        if isinstance(answer, (OrderRejected, OrderNotFound)):
            extra = {"reason": str(answer), "stage": "venue", "code": str(answer.code or "")}
            return [act.Record(intent, OrderEvent.REJECTED, extra, settle=True)]
        return [act.RecordResult(intent, answer, source="place")]

    def on_lookup(
        self,
        intent: OrderIntent,
        answer: Mapping[str, Any] | Exception,
        *,
        now_ns: int,
        source: str,
        failures: int,
    ) -> list[act.Action]:
        """Decide what the venue's answer to looking ``intent`` up means.

        "No such order" means the decision was never placed (a trader killed with it queued, a
        request lost or refused unexecuted) once no copy of a request for it can still be
        accepted: at once on a venue that refuses a second order under one client order id
        (``unique_client_ids``), elsewhere (Binance) once the receive window (plus a margin for
        clock skew) after the intent has passed; before that the lookup is tried again. A
        decision never placed is placed now under the same id, once (``placed_again``, kept
        with the intent in Redis so that a restarted trader knows it), if it is still valid (no
        older than ``max_price_age_s``, the age past which the trader acts on no market), the
        kill switch is off and no cancel of it was asked (a decision the trader cancels is not
        placed). Otherwise "no such order" settles it, once past the receive window after the
        last request. Answers that say nothing are tried ``status_attempts`` times
        (``failures`` so far); then the intent stays working (an ``unknown`` entry) for the
        next reconciliation.
        """
        if isinstance(answer, OrderNotFound):
            sent_ns = max(intent.ts_intent, self.placed_again.get(intent.client_order_id, 0))
            late_ms = sent_ns // MS + self.recv_window_ms + SKEW_MARGIN_MS
            now_ms = now_ns // MS
            never_got = self.unique_client_ids or now_ms >= late_ms
            if source != "cancel" and never_got and self._may_place_again(intent, now_ns):
                self.placed_again[intent.client_order_id] = now_ns
                self._count("placed_again")
                reason = f"the venue never got the decision ({answer}): placing it now, once"
                extra = {"reason": reason, "source": source, "placed_again_ns": str(now_ns)}
                # The new request carries the time it is made: a venue that stamps requests
                # with their intent's time (Binance) would refuse the intent's own, too old.
                again = dataclasses.replace(intent, ts_intent=now_ns)
                return [act.Record(intent, OrderEvent.PLACED_AGAIN, extra), act.Send(again)]
            if now_ms >= late_ms:
                reason = f"the venue has no such order: {answer}"
                if source != "cancel" and intent.client_order_id not in self.placed_again:
                    if self.kill_switch:
                        reason += "; the kill switch is on"
                    else:
                        age_s = (now_ns - intent.ts_intent) / 1e9
                        reason += f"; the decision is too old to place ({age_s:.1f} s)"
                extra = {"reason": reason, "source": source}
                self._count("not_executed")
                letter = {
                    "reason": f"decision not executed ({source}): {reason}; it is not sent again",
                    "client_order_id": intent.client_order_id,
                    "signal_id": intent.signal_id,
                    "intent": orjson.dumps(intent.to_fields()).decode(),
                }
                return [
                    act.Record(intent, OrderEvent.NOT_FOUND, extra, settle=True),
                    act.DeadLetter(letter),
                ]
            wait_s = min(2.0, (late_ms - now_ms) / 1000 + 0.01)
            return [act.Retry(at_least_s=wait_s, backoff=False)]
        if isinstance(answer, _SAYS_NOTHING):
            if failures + 1 >= self.status_attempts:
                self._count("unresolved")
                extra = {"reason": str(answer), "source": source}
                return [act.Record(intent, OrderEvent.UNKNOWN, extra)]
            at_least = answer.retry_after_s if isinstance(answer, RateLimited) else 0.0
            return [act.Retry(at_least_s=at_least, failed=True)]
        if isinstance(answer, Exception):
            return [act.Fail(answer)]
        return [act.RecordResult(intent, answer, source=f"status:{source}")]

    def _may_place_again(self, intent: OrderIntent, now_ns: int) -> bool:
        """Whether an intent the venue has no order of may be placed now (see ``on_lookup``)."""
        cid = intent.client_order_id
        if cid in self.placed_again or self.kill_switch:
            return False
        if len(self.placed_again) >= 10_000:
            self.placed_again.clear()
        return now_ns - intent.ts_intent <= self.max_price_age_ns

    def may_cancel(self, client_order_id: str, now_ns: int) -> bool:
        """Whether a cancel of ``client_order_id`` may leave now (not under way, not just tried)."""
        if client_order_id in self.inflight:
            return False
        if now_ns - self._cancel_tried.get(client_order_id, now_ns - CANCEL_RETRY_NS) < (
            CANCEL_RETRY_NS
        ):
            return False  # tried a moment ago; the next guard round tries again
        if len(self._cancel_tried) >= 10_000:
            self._cancel_tried.clear()
        self._cancel_tried[client_order_id] = now_ns
        self._count("cancels_sent")
        return True

    def on_cancel_answer(
        self,
        intent: OrderIntent,
        answer: Mapping[str, Any] | Exception,
        *,
        unclear: tuple[type[Exception], ...],
    ) -> list[act.Action]:
        """Decide what the venue's answer to cancelling ``intent`` means.

        ``unclear`` are the venue's errors after which the order's state is looked up (not open
        any more: filled first?); any other rejection is final.
        """
        if isinstance(answer, RateLimited):
            self._count("rate_limited")
            return [act.Retry(at_least_s=max(answer.retry_after_s, 0.1), backoff=False)]
        if isinstance(answer, VenueUnavailable):
            return [act.Retry()]
        if isinstance(answer, unclear):
            return [act.Resolve(intent, source="cancel")]
        if isinstance(answer, OrderRejected):
            return [act.Record(intent, OrderEvent.CANCEL_REJECTED, {"reason": str(answer)})]
        if isinstance(answer, Exception):
            return [act.Fail(answer)]
        self._count("cancels")
        return [act.RecordResult(intent, answer, source="cancel", event="canceled")]

    # -- order updates, the kill switch, ticks ---------------------------------------------------
    def on_update(self, fields: Mapping[bytes, bytes]) -> list[act.Action]:
        """Decide how one ``{V}:order-updates`` entry is recorded (undecodable: as is)."""
        self._count("updates")
        record = {**decode_fields(fields), "event": OrderEvent.UPDATE.value}
        try:
            update: OrderUpdate | None = OrderUpdate.from_fields(fields)
        except DecodeError:
            update = None
        return [act.ApplyUpdate(update, record)]

    def on_kill_switch(self, on: bool) -> list[act.Action]:
        """The kill switch as Redis holds it now; a change is recorded."""
        if on == self.kill_switch:
            return []
        self.kill_switch = on
        return [act.RecordEvent("kill_switch", {"on": "1" if on else "0"})]

    def on_tick(self, now_ns: int) -> list[act.Action]:
        """The guard's round: cancel what the kill switch or a position limit no longer allows."""
        del now_ns  # the guard's decisions do not depend on time; cancels are paced on leaving
        return [*self.breach_cancels()]

    def breach_cancels(self, symbol: str | None = None) -> list[act.Cancel]:
        """The working orders the kill switch or a position limit no longer allows."""
        tracker = self.tracker
        if self.kill_switch:
            cids = [o.client_order_id for o in tracker.working()]
            reason = "kill switch"
        else:
            symbols = [symbol] if symbol else sorted({o.symbol for o in tracker.working()})
            cids = []
            for s in symbols:
                working = [o.working() for o in tracker.working(s)]
                cids += breach_cancels(s, tracker.position(s), working, self.limits)
            reason = "position limit"
        return [act.Cancel(c, reason) for c in cids if c not in self.inflight]

    def unresolved(self) -> bool:
        """Whether a working order has no venue answer yet (its outcome is unknown)."""
        return any(
            not o.order_id and o.client_order_id not in self.inflight
            for o in self.tracker.working()
        )
