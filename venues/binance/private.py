"""Turn Binance's user-data frames into order updates and balances (pure, no I/O).

``executionReport`` events become :class:`common.schema.OrderUpdate`, identified by their
execution id ``I``; ``outboundAccountPosition`` becomes one :class:`common.messages.Balance`
(``position``) per asset it lists and ``balanceUpdate`` one (``update``); request replies and
other account events (``listStatus``, ``eventStreamTerminated``...) are named for the caller's
counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickpipe.common.errors import DecodeError
from tickpipe.common.messages import Balance
from tickpipe.common.schema import OrderUpdate, RawFrame
from tickpipe.common.units import MS
from tickpipe.venues.binance import wire as binance
from tickpipe.venues.binance.candles import decimal_field, int_field

__all__ = ["parse_private"]


def _balances(payload: Mapping[str, Any], ts_recv: int) -> list[Balance]:
    ts_event = int_field(payload, "E", payload["e"]) * MS
    if payload["e"] == "balanceUpdate":
        asset = payload.get("a")
        if not isinstance(asset, str) or not asset:
            raise DecodeError(f"balanceUpdate asset is invalid: {asset!r}")
        delta = decimal_field(payload, "d", "balanceUpdate", signed=True)
        ts_account = int_field(payload, "T", "balanceUpdate") * MS
        return [Balance("binance", "update", asset, "", "", delta, ts_account, ts_event, ts_recv)]
    assets = payload.get("B")
    if not isinstance(assets, list):
        raise DecodeError("outboundAccountPosition without its balances 'B'")
    ts_account = int_field(payload, "u", "outboundAccountPosition") * MS
    out = []
    for item in assets:
        asset = item.get("a") if isinstance(item, Mapping) else None
        if not isinstance(asset, str) or not asset:
            raise DecodeError(f"outboundAccountPosition asset is invalid: {item!r}")
        free = decimal_field(item, "f", "outboundAccountPosition")
        locked = decimal_field(item, "l", "outboundAccountPosition")
        out.append(
            Balance("binance", "position", asset, free, locked, "", ts_account, ts_event, ts_recv)
        )
    return out


def parse_private(frame: RawFrame) -> tuple[OrderUpdate, int | None] | list[Balance] | str:
    """Classify a user-data frame: an order update and its execution id, the balances it
    reports, or a counter's name."""
    if frame.kind != "ws":
        raise DecodeError(f"unexpected raw frame kind {frame.kind!r} on the private stream")
    _, payload = binance.unwrap(frame.data)
    if binance.is_reply(payload):
        return "replies"
    if not isinstance(payload, Mapping) or "e" not in payload:
        raise DecodeError("unrecognised private frame: neither an event nor a reply")
    if payload["e"] in ("outboundAccountPosition", "balanceUpdate"):
        return _balances(payload, frame.ts_recv)
    if payload["e"] != "executionReport":
        return "ignored"
    execution_id = payload.get("I")
    if execution_id is not None and (
        not isinstance(execution_id, int) or isinstance(execution_id, bool)
    ):
        raise DecodeError(f"executionReport execution id must be an integer: {execution_id!r}")
    try:
        return binance.parse_execution_report(payload, ts_recv=frame.ts_recv), execution_id
    except (ValueError, TypeError) as exc:
        raise DecodeError(f"executionReport is invalid: {exc!r}") from exc
