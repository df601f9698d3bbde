"""IBKR level-1 updates through the pure processor core: quotes, last-trade samples, bars."""

from __future__ import annotations

from typing import Any

import orjson

from tickpipe.common.schema import RawFrame
from tickpipe.processor.core import PartitionState, process_batch

MS = 1_000_000
T0_MS = 1_700_000_000_000
WIDE_MS = 10 * 365 * 86_400_000


def smd(updated_ms: int, **fields: Any) -> dict[str, Any]:
    return {**fields, "conid": 265598, "_updated": updated_ms, "topic": "smd+265598"}


def frames(*messages: dict[str, Any]) -> list[tuple[str, RawFrame]]:
    out = []
    for i, message in enumerate(messages, 1):
        data = orjson.dumps(message).decode()
        ts = message["_updated"] * MS + 5 * MS
        out.append((f"{T0_MS + i}-0", RawFrame("ws", "ibkr", "c/1", i, ts, data, "smd:AAPL")))
    return out


def state() -> PartitionState:
    return PartitionState("ibkr:0", "ibkr", max_event_ahead_ms=WIDE_MS, max_event_age_ms=WIDE_MS)


UPDATES = (
    smd(T0_MS),  # the bare first update
    smd(
        T0_MS + 250,
        **{"31": "190.10", "7059": "3", "84": "190.09", "86": "190.11", "88": "300", "85": "200"},
    ),
    smd(T0_MS + 500, **{"31": "190.12"}),  # price changed, size as before
    smd(T0_MS + 750, **{"7059": "5"}),  # size changed, price as before
    smd(T0_MS + 1000, **{"84": "190.10"}),  # book only
)


def test_changed_fields_merge_into_quotes_and_last_trade_samples() -> None:
    st = state()
    out = process_batch(st, frames(*UPDATES), ts_now=T0_MS * MS + 10**9)
    trades = [(t.trade_id, t.price, t.qty) for t in out.trades]
    assert trades == [
        (str(T0_MS + 250), "190.10", "3"),
        (str(T0_MS + 500), "190.12", "3"),
        (str(T0_MS + 750), "190.12", "5"),
    ]
    quotes = [(q.bid_price, q.bid_qty, q.ask_price, q.ask_qty) for q in out.quotes]
    assert quotes == [("190.09", "300", "190.11", "200"), ("190.10", "300", "190.11", "200")]
    assert st.counters["l1_empty"] == 1


def test_a_duplicated_update_is_one_trade_and_the_view_survives_a_checkpoint() -> None:
    st = state()
    process_batch(st, frames(*UPDATES[:2]), ts_now=T0_MS * MS)
    restored = PartitionState.from_bytes(
        st.to_bytes(), "ibkr:0", "ibkr", max_event_ahead_ms=WIDE_MS, max_event_age_ms=WIDE_MS
    )
    again = frames(*UPDATES[:2], smd(T0_MS + 600, **{"7059": "7"}))
    renamed = [(f"{T0_MS + 100 + i}-0", f) for i, (_, f) in enumerate(again)]
    out = process_batch(restored, renamed, ts_now=T0_MS * MS)
    assert [(t.price, t.qty) for t in out.trades] == [("190.10", "7")]
    assert restored.counters["duplicate_trades"] == 1
