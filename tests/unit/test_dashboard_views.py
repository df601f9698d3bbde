"""The dashboard's pure parts: bar folding, the first figure, incremental patches, tables."""

from __future__ import annotations

from typing import Any

from dash import html

from tickpipe.dashboard.reader import MAX_BARS, BarUpdate, ChartUpdate, fold_bars, latency_summary
from tickpipe.dashboard.views import (
    CANDLES,
    ORDERS,
    TRADES,
    book_view,
    chart_figure,
    chart_patch,
    health_view,
    orders_view,
    when,
)

S = 1_000_000_000


def bar_fields(ts: int, close: str, revision: int, final: bool = False) -> dict[str, str]:
    return {"symbol": "BTCUSDT", "ts_open": str(ts), "open": "10", "high": "12", "low": "9",
            "close": close, "revision": str(revision), "final": "1" if final else "0"}  # fmt: skip


def ops(patch: Any) -> list[dict[str, Any]]:
    return list(patch.to_plotly_json()["operations"])


def test_fold_bars_keeps_the_latest_revision_of_each_bar() -> None:
    entries = [
        ("1-0", bar_fields(0, "10.5", 0)),
        ("2-0", bar_fields(0, "11", 1, final=True)),
        ("3-0", bar_fields(S, "9.5", 0)),
        ("4-0", bar_fields(0, "10.9", 0)),  # an older revision arriving late is ignored
        ("5-0", {**bar_fields(S, "1", 3), "symbol": "ETHUSDT"}),
        ("6-0", {"symbol": "BTCUSDT", "ts_open": "x"}),
    ]
    bars = fold_bars(entries, "BTCUSDT")
    assert [(b.ts_open, b.close) for b in bars.values()] == [(0, 11.0), (S, 9.5)]


def test_first_figure_has_candles_markers_and_state() -> None:
    update = ChartUpdate(
        bars={0: BarUpdate(0, 1, 2, 0.5, 1.5), S: BarUpdate(S, 1.5, 3, 1, 2.5)},
        trades=[(S + 5, 2.0, "buy")], fills=[(S + 6, 2.1, "sell")], intents=[(S + 7, "sell")],
        ids={"bars": "9-0", "trades": "8-0", "orders": "7-0"},
    )  # fmt: skip
    figure, state = chart_figure("BTCUSDT", "1s", update)
    candles = figure["data"][CANDLES]
    assert candles["type"] == "candlestick" and candles["close"] == [1.5, 2.5]
    assert figure["data"][TRADES]["y"] == [2.0]
    assert figure["data"][ORDERS]["y"] == [2.5]  # an order is marked at its bar's close
    assert state["opens"] == [0, S] and state["ids"]["bars"] == "9-0"
    assert "annotations" not in figure["layout"]


def test_an_empty_chart_says_no_data() -> None:
    figure, state = chart_figure("BTCUSDT", "1m", ChartUpdate())
    assert figure["layout"]["annotations"][0]["text"] == "no data yet"
    assert state["opens"] == []


def test_patch_revises_a_moving_candle_in_place_and_appends_new_ones() -> None:
    _, state = chart_figure("BTCUSDT", "1s", ChartUpdate(bars={0: BarUpdate(0, 1, 2, 0.5, 1.5)}))
    update = ChartUpdate(
        bars={0: BarUpdate(0, 1, 2.2, 0.5, 2.0), S: BarUpdate(S, 2, 2, 2, 2)},
        trades=[(S, 2.0, "buy")], ids={"bars": "3-0"},
    )  # fmt: skip
    patch, new = chart_patch(update, state)
    operations = ops(patch)
    assigned = [o for o in operations if o["operation"] == "Assign"]
    appended = [o for o in operations if o["operation"] == "Append"]
    assert {
        "operation": "Assign",
        "location": ["data", CANDLES, "close", 0],
        "params": {"value": 2.0},
    } in assigned
    assert ["data", CANDLES, "x"] in [o["location"] for o in appended]
    assert any(
        o["location"] == ["data", TRADES, "x"] for o in operations if o["operation"] == "Extend"
    )
    assert new["opens"] == [0, S] and new["ids"] == {"bars": "3-0"} and new["last_close"] == 2.0


def test_patch_trims_the_window_to_its_bound() -> None:
    opens = [i * S for i in range(MAX_BARS)]
    state = {"opens": opens, "ids": {}, "last_close": 1.0, "marks": {}}
    update = ChartUpdate(bars={MAX_BARS * S: BarUpdate(MAX_BARS * S, 1, 1, 1, 1)})
    patch, new = chart_patch(update, state)
    deletes = [o for o in ops(patch) if o["operation"] == "Delete"]
    assert len(deletes) == 5  # one per candle array
    assert len(new["opens"]) == MAX_BARS and new["opens"][0] == S


def test_patch_without_news_changes_nothing() -> None:
    _, state = chart_figure("BTCUSDT", "1s", ChartUpdate(bars={0: BarUpdate(0, 1, 1, 1, 1)}))
    patch, new = chart_patch(ChartUpdate(ids=state["ids"]), state)
    assert ops(patch) == [] and new["opens"] == [0]


def _text(component: Any) -> str:
    if isinstance(component, str | int | float):
        return str(component)
    children = getattr(component, "children", None)
    if children is None:
        return ""
    if isinstance(children, list):
        return " ".join(_text(c) for c in children)
    return _text(children)


def test_health_view_marks_each_stage_and_computes_rates() -> None:
    view = {
        "health": [
            {
                "service": "ingestor",
                "instance": "a",
                "status": "ok",
                "updated_ns": 99 * S,
                "reconnects": 2,
                "frames_per_s": 10.0,
            }
        ],
        "streams": [
            {"name": "tp:{b:0}:trades", "kind": "trades", "length": 30, "groups": []},
            {"name": "tp:{b:0}:gaps", "kind": "gaps", "length": 1, "groups": []},
        ],
    }
    div, state = health_view(view, {"lengths": {"tp:{b:0}:trades": 10}, "at": 98.0}, now_s=100.0)
    row = div.children[0].children[1].children[0]
    assert row.to_plotly_json()["props"]["data-status"] == "ok"
    text = _text(div)
    assert "reconnects 2" in text and "gaps 1" in text and "10.0" in text  # 20 entries in 2 s
    assert state == {"lengths": {"tp:{b:0}:trades": 30, "tp:{b:0}:gaps": 1}, "at": 100.0}
    assert div.children[2].children == []  # no alarm


def test_health_view_shows_the_traders_alarms_and_its_dead_letters() -> None:
    alarm = "intent mismatch: tp-1: side buy != sell"
    view = {
        "health": [
            {"service": "trader", "instance": "trd", "status": "ok", "updated_ns": 99 * S,
             "intent_mismatches": 1, "alarms": [alarm]},
            {"service": "trader", "instance": "trd.standby", "status": "standby",
             "updated_ns": 99 * S, "alarms": []},
        ],
        "streams": [
            {"name": "tp:{b}:trader-dead-letters", "kind": "trader-dead-letters", "length": 1,
             "groups": []},
            {"name": "tp:{b:0}:dead-letters", "kind": "dead-letters", "length": 2, "groups": []},
        ],
    }  # fmt: skip
    div, _ = health_view(view, None, now_s=100.0)
    alarms = div.children[2]
    assert alarms.id == "alarms" and _text(alarms) == f"trader trd: {alarm}"
    assert alarms.children[0].className == "alarm"
    text = _text(div)
    assert "dead letters 3" in text and "intent_mismatches=1" in text and "standby" in text


def test_tables_show_no_data_gracefully() -> None:
    assert "no data" in _text(book_view({"quote": {}, "book": {}}))
    assert isinstance(orders_view([]), html.Div)
    quote = {"bid_price": "1", "bid_qty": "2", "ask_price": "3", "ask_qty": "4"}
    book = {"bids": '[["1","5"]]', "asks": '[["3","6"],["4","7"]]'}
    text = _text(book_view({"quote": quote, "book": book}))
    assert "5 1 3 6" in text and "4 7" in text
    book = {"status": "live", "bids": "9:1,8:2", "asks": "10:3"}
    text = _text(book_view({"quote": quote, "book": book}))
    assert "Book (live)" in text and "1 9 10 3" in text and "2 8" in text


def test_orders_view_shows_type_state_and_average_fill_price() -> None:
    table = orders_view([{"client_order_id": "tp-1", "symbol": "BTCUSDT", "side": "buy",
                          "order_type": "MARKET", "qty": "0.00100000", "state": "FILLED",
                          "filled_qty": "0.002", "cum_quote": "200"},
                         {"client_order_id": "tp-2", "symbol": "BTCUSDT", "side": "buy",
                          "order_type": "LIMIT", "qty": "0.001", "state": "CANCELED",
                          "filled_qty": "0", "price": "61500"}])  # fmt: skip
    assert "tp-1 BTCUSDT buy MARKET 0.001 FILLED 0.002 100000.00" in _text(table)
    assert "tp-2 BTCUSDT buy LIMIT 0.001 CANCELED 0" in _text(table)


def test_latency_summary_reports_median_and_p95() -> None:
    rows = latency_summary({"a": [1.0, 2.0, 3.0, 100.0], "b": []})
    assert rows[0] == {"hop": "a", "p50_ms": "2.5", "p95_ms": "100.0", "n": "4"}
    assert rows[1]["n"] == "0"


def test_when_is_utc_milliseconds() -> None:
    assert when(1_700_000_000_123_456_789) == "2023-11-14 22:13:20.123"


def test_health_view_shows_the_venue_clock_and_silent_streams() -> None:
    view = {
        "health": [
            {"service": "trader", "instance": "trd", "status": "ok", "updated_ns": 99 * S,
             "venue_clock_offset_ms": -2512.25, "venue_clock_uncertainty_ms": 0.75,
             "venue_clock_samples": 4, "venue_clock_state": "beyond"},
            {"service": "ingestor", "instance": "ing", "status": "ok", "updated_ns": 99 * S,
             "streams_silent": 2},
        ],
        "streams": [],
    }  # fmt: skip
    div, _ = health_view(view, None, now_s=100.0)
    clock = next(c for c in div.children if getattr(c, "id", None) == "venue-clock")
    assert _text(clock) == "venue clock (trader trd): -2512.2 ms ± 0.8 ms, beyond"
    assert clock.className == "alarm"
    assert "streams_silent=2" in _text(div)
