"""A signal id names one decision: N threshold crossings give N distinct ids, whatever the batches.

The trades of one REST backfill page share one raw entry, so an id built from the entry would
repeat for every decision taken on that page. The property: for any trade prices, any backfill
page size and any split of the raw entries into batches (with a checkpoint round trip between
batches), the strategy's crossings counted by a reference give exactly that many signals, every
id distinct and the same ids on every run.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickpipe.common.schema import RawFrame, Signal
from tickpipe.processor.core import BadEntry, PartitionState, process_batch
from tickpipe.processor.strategies import ThresholdCross

LEVEL = Decimal(100)
BAND = Decimal("0.001")  # 10 bps of hysteresis
PRICES = ["99.5", "99.95", "100", "100.05", "100.5"]  # below, inside the band, above
BASE_MS = 1_723_161_254_000
Entries = list[tuple[str, RawFrame | BadEntry]]


def _strategy() -> ThresholdCross:
    return ThresholdCross({"BTCUSDT": str(LEVEL)}, hysteresis_bps="10", order_qty="0.001")


def _live(trade_id: int, price: str) -> RawFrame:
    payload = {
        "e": "trade", "E": BASE_MS + trade_id, "s": "BTCUSDT", "t": trade_id, "p": price,
        "q": "0.01", "T": BASE_MS + trade_id, "m": trade_id % 2 == 0,
    }  # fmt: skip
    data = orjson.dumps({"stream": "btcusdt@trade", "data": payload}).decode()
    return RawFrame("ws", "binance", "c1", trade_id, (BASE_MS + trade_id) * 1_000_000, data)


def _page(trades: list[tuple[int, str]], ts_recv: int) -> RawFrame:
    response = [
        {"id": i, "price": p, "qty": "0.01", "quoteQty": "1", "time": BASE_MS + i,
         "isBuyerMaker": i % 2 == 0, "isBestMatch": True}
        for i, p in trades
    ]  # fmt: skip
    body = {"symbol": "BTCUSDT", "request": {"path": "/api/v3/historicalTrades"}}
    data = orjson.dumps({**body, "reason": "gap", "response": response}).decode()
    return RawFrame("rest", "binance", "rest/1", 1, ts_recv, data, "trades_backfill")


def _entries(prices: list[str], page_size: int) -> tuple[Entries, list[str]]:
    """Trade 1 and the last trade live, the ones between from backfill pages of ``page_size``.

    Return the entries and the prices in the order the processor sees the trades.
    """
    last = len(prices)
    frames: list[RawFrame] = [_live(1, prices[0]), _live(last, prices[-1])]
    middle = list(enumerate(prices[1:-1], start=2))
    fetched_ns = (BASE_MS + last + 2000) * 1_000_000
    for at in range(0, len(middle), page_size):
        frames.append(_page(middle[at : at + page_size], fetched_ns))
    order = [prices[0], prices[-1], *(p for _, p in middle)]
    return [(f"{BASE_MS + 5000}-{n}", frame) for n, frame in enumerate(frames)], order


def _crossings(prices: list[str]) -> int:
    """Count the reference crossings: below -> above or above -> below, through the band."""
    state, count = "", 0
    for text in prices:
        price = Decimal(text)
        new = (
            "above"
            if price >= LEVEL * (1 + BAND)
            else "below"
            if price <= LEVEL * (1 - BAND)
            else ""
        )
        if new and state and new != state:
            count += 1
        state = new or state
    return count


def _run(entries: Entries, cuts: list[int]) -> list[Signal]:
    state = PartitionState("binance:0", "binance", [_strategy()])
    points = sorted({min(c, len(entries)) for c in cuts})
    signals: list[Signal] = []
    for a, b in zip([0, *points], [*points, len(entries)], strict=True):
        signals += process_batch(state, entries[a:b], 7).signals
        state = PartitionState.from_bytes(state.to_bytes(), "binance:0", "binance", [_strategy()])
    return signals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(PRICES), min_size=3, max_size=400),
    st.integers(min_value=1, max_value=1000),
    st.lists(st.integers(min_value=1, max_value=12), max_size=6),
)
def test_n_crossings_give_n_distinct_signal_ids(
    prices: list[str], page_size: int, cuts: list[int]
) -> None:
    entries, order = _entries(prices, page_size)
    signals = _run(entries, cuts)
    ids = [s.signal_id for s in signals]
    assert len(signals) == _crossings(order)
    assert len(set(ids)) == len(ids), f"repeated ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert ids == [s.signal_id for s in _run(entries, [])]  # the same decisions, the same ids


def test_one_backfill_page_with_several_crossings_gives_distinct_ids() -> None:
    prices = ["100.5", "99.5", "100.5", "99.5", "100.5", "99.5"]
    entries, order = _entries(prices, 1000)
    signals = _run(entries, [])
    # Seen in the order 100.5 (1), 99.5 (6, live), then the page: 99.5 100.5 99.5 100.5.
    assert [s.side for s in signals] == ["sell", "buy", "sell", "buy"] and _crossings(order) == 4
    assert len({s.signal_id for s in signals}) == 4
    assert all(s.cause == entries[2][0] for s in signals[1:])  # the cause stays the raw entry
