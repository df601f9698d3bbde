"""Route market events to the strategies that declared them, isolating their failures (pure).

Each hook call is guarded: a strategy that raises is skipped for that event, the error is
counted (``strategy_errors``) and reported in the batch's warnings with the event that caused
it (the first three, then at the 4th, 8th, 16th... failure), and once it has failed
``strategy_max_failures`` times it is disabled (``strategies_disabled``) and never called again.
The failure counts live in the checkpoint, so a replay or a takeover disables it at the same
event. A spec whose order type breaks :func:`common.order_spec.order_problem` counts as such a
failure (:class:`BadSignal`), with the rule it broke in the warning. :func:`route_own_updates`
hands a strategy the updates, fills and positions of its own orders
(:mod:`processor.own_orders`). The timer's clock is the greatest event time of the trades,
quotes and book changes seen; a strategy's ``on_timer`` runs once each time the clock enters a
new interval (a long silence gives one call, for the latest interval, not one per interval
missed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickpipe.common.instruments import InstrumentFilters
from tickpipe.common.order_spec import terms_problem
from tickpipe.common.schema import OrderUpdate, Signal, order_terms
from tickpipe.processor.own_orders import updates_after
from tickpipe.processor.state import PartitionState
from tickpipe.processor.strategies import INSTRUMENTS, ORDERS, TIMER, SignalSpec, Strategy

__all__ = ["BadSignal", "advance_timers", "route", "route_own_updates", "spec_problem"]


class BadSignal(ValueError):
    """A strategy answered a signal that breaks the order rules (:mod:`common.order_spec`)."""


_SHOWN_CHARS = 300


def route(
    state: PartitionState,
    signals: list[Signal],
    warnings: list[str],
    strategies: list[Strategy],
    kind: str,
    hook: str,
    event: Any,
    *,
    ident: str,
    venue: str,
    cause: str,
    ts_event: int,
    ts_recv: int,
    ts_now: int,
) -> None:
    """Call ``hook`` of every live one of ``strategies`` (routed ``kind``); append their signals.

    ``ident`` names the causing event (``venue|symbol|t<trade id>`` ...): a signal's id is
    ``ident|strategy|index``, the same on every replay.
    """
    follows = state.routes[ORDERS]
    for strategy in strategies:
        name = strategy.name
        if state.strategy_failures.get(name, 0) >= state.strategy_max_failures:
            continue
        try:
            specs: list[SignalSpec] = getattr(strategy, hook)(event, ts_now)
            for spec in specs:
                problem = spec_problem(spec)
                if problem is not None:
                    raise BadSignal(f"signal for {spec.symbol}: {problem}")
        except Exception as exc:  # a plug-in's bug must not stop the partition
            _failed(state, warnings, strategy, exc, kind, event)
            continue
        for n, spec in enumerate(specs):
            signal = Signal(
                signal_id=f"{ident}|{name}|{n}",
                venue=venue,
                symbol=spec.symbol,
                strategy=name,
                action=spec.action,
                side=spec.side,
                qty=spec.qty,
                price=spec.price,
                reason=spec.reason,
                cause=spec.cause or cause,
                ts_event=ts_event,
                ts_recv=ts_recv,
                ts_signal=ts_now,
                **order_terms(spec),
            )
            signals.append(signal)
            if strategy in follows:
                state.own.remember(signal)
            state.counters["signals"] += 1


def route_own_updates(
    state: PartitionState,
    signals: list[Signal],
    warnings: list[str],
    updates: Sequence[tuple[str, OrderUpdate]],
    ts_now: int,
    *,
    order_events: Sequence[tuple[str, OrderUpdate | InstrumentFilters]] = (),
) -> None:
    """Hand the ``order-updates`` entries, then the trader's refusals and filters (``orders``
    entries), after the checkpoint's to the strategies that own or follow them.

    Each update of an order a strategy here placed goes to its ``on_order_update``; a fill also
    to ``on_fill`` and the position after it to ``on_position`` (:mod:`processor.own_orders`).
    """
    own = state.own
    for entry_id, update in updates_after(own.last_update_id, updates):
        own.last_update_id = entry_id
        _own_update(state, signals, warnings, f"o{entry_id}", entry_id, update, ts_now)
    for entry_id, event in updates_after(own.last_order_event_id, order_events):
        own.last_order_event_id = entry_id
        if isinstance(event, OrderUpdate):
            _own_update(state, signals, warnings, f"r{entry_id}", entry_id, event, ts_now)
        elif state.routes[INSTRUMENTS]:
            route(state, signals, warnings, state.routes[INSTRUMENTS], INSTRUMENTS,
                  "on_instruments", event, ident=f"{state.venue}|{event.symbol}|i{entry_id}",
                  venue=state.venue, cause=entry_id, ts_event=0, ts_recv=0,
                  ts_now=ts_now)  # fmt: skip


def _own_update(
    state: PartitionState,
    signals: list[Signal],
    warnings: list[str],
    name: str,
    entry_id: str,
    update: OrderUpdate,
    ts_now: int,
) -> None:
    own = state.own
    found = own.owner(update.client_order_id)
    strategy = next((s for s in state.routes[ORDERS] if found and s.name == found[0]), None)
    if found is None or strategy is None:
        return
    state.counters["own_updates"] += 1
    ident = f"{update.venue}|{update.symbol}|{name}"
    calls: list[tuple[str, object]] = [("on_order_update", update)]
    fill = own.fill_of(update, found[0], found[1])
    if fill is not None:
        state.counters["own_fills"] += 1
        calls += [("on_fill", fill), ("on_position", own.apply(fill))]
    for n, (hook, event) in enumerate(calls):
        route(state, signals, warnings, [strategy], ORDERS, hook, event,
              ident=f"{ident}.{n}", venue=update.venue, cause=entry_id,
              ts_event=update.ts_event, ts_recv=update.ts_recv, ts_now=ts_now)  # fmt: skip


def spec_problem(spec: SignalSpec) -> str | None:
    """Return what is wrong with a strategy's order type and its parameters, or ``None``."""
    if spec.action == "cancel":
        if spec.replaces:
            return "replaces is for a place signal (a cancel signal cancels the symbol's orders)"
        return None
    if not spec.order_type:
        if spec.time_in_force or spec.post_only:
            return "time_in_force and post_only need order_type LIMIT"
        if spec.stop_price:
            return "stop_price needs a stop or take-profit order_type (STOP, STOP_LIMIT...)"
        if spec.quote_qty:
            return "quote_qty needs order_type MARKET"
        return None
    return terms_problem(spec, spec.price, qty=spec.qty)


def advance_timers(
    state: PartitionState,
    signals: list[Signal],
    warnings: list[str],
    ts_event: int,
    ts_now: int,
) -> None:
    """Move the strategies' event-time clock to ``ts_event``; call the timers that fall due."""
    if ts_event <= state.strategy_clock:
        return
    state.strategy_clock = ts_event
    for strategy in state.routes[TIMER]:
        interval_ns = strategy.timer_interval_ms * 1_000_000
        due = ts_event - ts_event % interval_ns
        last = state.strategy_timers.get(strategy.name)
        state.strategy_timers[strategy.name] = due
        if last is None or due <= last:
            continue  # the first event only sets the phase
        route(
            state,
            signals,
            warnings,
            [strategy],
            TIMER,
            "on_timer",
            due,
            ident=f"{state.venue}|{state.partition}|timer{due}",
            venue=state.venue,
            cause="",
            ts_event=due,
            ts_recv=due,
            ts_now=ts_now,
        )


def _failed(
    state: PartitionState,
    warnings: list[str],
    strategy: Strategy,
    exc: Exception,
    kind: str,
    event: Any,
) -> None:
    name = strategy.name
    failures = state.strategy_failures.get(name, 0) + 1
    state.strategy_failures[name] = failures
    state.counters["strategy_errors"] += 1
    limit = state.strategy_max_failures
    disabled = failures >= limit
    if disabled:
        state.counters["strategies_disabled"] += 1
    if disabled or failures <= 3 or failures & (failures - 1) == 0:
        shown = repr(event)[:_SHOWN_CHARS]
        tail = (
            f"; disabled after {failures} failures (TICKPIPE_STRATEGY_MAX_FAILURES={limit})"
            if disabled
            else f" (failure {failures} of {limit})"
        )
        warnings.append(
            f"strategy {name} raised {type(exc).__name__}: {str(exc)[:_SHOWN_CHARS]} "
            f"on {kind} {shown}{tail}"
        )
