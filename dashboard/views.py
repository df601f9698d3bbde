"""Turn what :mod:`dashboard.reader` read into Plotly figures, Dash patches and tables (pure).

The chart keeps a small state in the browser (``dcc.Store``): the stream ids it has read up to
and the open times of the candles it shows. :func:`chart_patch` uses it to turn new entries into
a :class:`dash.Patch` that changes only the candles that moved and appends new ones, trimming
the window to :data:`~dashboard.reader.MAX_BARS` candles and
:data:`~dashboard.reader.MAX_MARKS` markers per trace.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from dash import Patch, html

from tickpipe.dashboard.reader import MAX_BARS, MAX_MARKS, ChartUpdate

__all__ = [
    "book_view",
    "chart_figure",
    "chart_patch",
    "health_view",
    "orders_view",
    "positions_view",
    "table",
]

BAR_KEYS = ("x", "open", "high", "low", "close")
#: Trace order in the chart figure.
CANDLES, TRADES, BUYS, SELLS, ORDERS = range(5)


def when(ns: int) -> str:
    """An ISO time (UTC, milliseconds) Plotly reads as a date."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _marks(update: ChartUpdate, closes: dict[int, float], last_close: float | None) -> dict[
    int, tuple[list[str], list[float]]
]:  # fmt: skip
    """New marker points per marker trace."""
    out: dict[int, tuple[list[str], list[float]]] = {
        t: ([], []) for t in (TRADES, BUYS, SELLS, ORDERS)
    }
    for ts, price, _ in update.trades:
        out[TRADES][0].append(when(ts))
        out[TRADES][1].append(price)
    for ts, price, side in update.fills:
        trace = BUYS if side.lower() == "buy" else SELLS
        out[trace][0].append(when(ts))
        out[trace][1].append(price)
    opens = sorted(closes)
    for ts, _ in update.intents:
        before = [o for o in opens if o <= ts]
        mark = closes[before[-1]] if before else last_close
        if mark is not None:
            out[ORDERS][0].append(when(ts))
            out[ORDERS][1].append(mark)
    return out


def chart_figure(
    symbol: str, interval: str, update: ChartUpdate
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the whole chart and its state from a first read."""
    bars = list(update.bars.values())[-MAX_BARS:]
    closes = {b.ts_open: b.close for b in bars}
    marks = _marks(update, closes, bars[-1].close if bars else None)
    candles = {
        "type": "candlestick", "name": f"{symbol} {interval}",
        "x": [when(b.ts_open) for b in bars], "open": [b.open for b in bars],
        "high": [b.high for b in bars], "low": [b.low for b in bars],
        "close": [b.close for b in bars],
    }  # fmt: skip
    styles = {
        TRADES: ("trades", {"size": 3, "color": "rgba(90,90,90,0.45)"}),
        BUYS: ("own buys", {"size": 11, "color": "#1a9850", "symbol": "triangle-up"}),
        SELLS: ("own sells", {"size": 11, "color": "#d73027", "symbol": "triangle-down"}),
        ORDERS: ("orders sent", {"size": 9, "color": "#ff8c00", "symbol": "x"}),
    }
    traces: list[dict[str, Any]] = [candles]
    for trace, (name, marker) in styles.items():
        xs, ys = marks[trace]
        traces.append({"type": "scatter", "mode": "markers", "name": name,
                       "x": xs[-MAX_MARKS:], "y": ys[-MAX_MARKS:], "marker": marker})  # fmt: skip
    layout: dict[str, Any] = {
        "margin": {"l": 50, "r": 10, "t": 30, "b": 30}, "height": 420,
        "xaxis": {"rangeslider": {"visible": False}, "type": "date"},
        "title": {"text": f"{symbol} {interval} candles", "font": {"size": 14}},
        "uirevision": f"{symbol}-{interval}", "legend": {"orientation": "h"},
    }  # fmt: skip
    if not bars:
        layout["annotations"] = [{"text": "no data yet", "showarrow": False, "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5}]  # fmt: skip
    state = {
        "symbol": symbol, "interval": interval, "ids": update.ids,
        "opens": [b.ts_open for b in bars], "last_close": bars[-1].close if bars else None,
        "marks": {str(t): min(len(marks[t][0]), MAX_MARKS) for t in marks},
    }  # fmt: skip
    return {"data": traces, "layout": layout}, state


def chart_patch(update: ChartUpdate, state: dict[str, Any]) -> tuple[Patch, dict[str, Any]]:
    """Change only what moved: revised candles in place, new candles and markers appended."""
    patch = Patch()
    opens: list[int] = list(state["opens"])
    candles = patch["data"][CANDLES]
    had_bars = bool(opens)
    for ts, bar in update.bars.items():
        values = (when(ts), bar.open, bar.high, bar.low, bar.close)
        if ts in opens:
            index = opens.index(ts)
            for key, value in zip(BAR_KEYS, values, strict=True):
                candles[key][index] = value
        elif not opens or ts > opens[-1]:
            for key, value in zip(BAR_KEYS, values, strict=True):
                candles[key].append(value)
            opens.append(ts)
    while len(opens) > MAX_BARS:
        for key in BAR_KEYS:
            del candles[key][0]
        opens.pop(0)
    if opens and not had_bars:
        patch["layout"]["annotations"] = []
    closes = {ts: bar.close for ts, bar in update.bars.items()}
    last_close = closes[max(closes)] if closes else state.get("last_close")
    counts = dict(state.get("marks", {}))
    for trace, (xs, ys) in _marks(update, closes, state.get("last_close")).items():
        if not xs:
            continue
        patch["data"][trace]["x"].extend(xs)
        patch["data"][trace]["y"].extend(ys)
        count = counts.get(str(trace), 0) + len(xs)
        while count > MAX_MARKS:
            del patch["data"][trace]["x"][0]
            del patch["data"][trace]["y"][0]
            count -= 1
        counts[str(trace)] = count
    new_state = {**state, "ids": update.ids, "opens": opens, "last_close": last_close,
                 "marks": counts}  # fmt: skip
    return patch, new_state


def table(
    columns: list[str], rows: list[list[Any]], *, table_id: str, empty: str = "no data",
    first_class: str = "",
) -> html.Table | html.Div:  # fmt: skip
    """A plain HTML table, or a ``no data`` note when there are no rows."""
    if not rows:
        return html.Div(empty, id=table_id, className="empty")
    head = html.Thead(html.Tr([html.Th(c) for c in columns]))
    body = html.Tbody([
        html.Tr([html.Td(str(v), className=first_class if i == 0 else "")
                 for i, v in enumerate(row)])
        for row in rows
    ])  # fmt: skip
    return html.Table([head, body], id=table_id, className="grid")


def _levels(text: str) -> list[list[str]]:
    """Parse ``price:qty,...`` (best first) or a JSON list of ``[price, qty]``; keep five."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return []
        return [list(map(str, level[:2])) for level in value if isinstance(level, list)][:5]
    pairs = [level.split(":", 1) for level in text.split(",") if ":" in level]
    return [[price, qty] for price, qty in pairs][:5]


def book_view(book: dict[str, Any]) -> html.Div:
    """Top of book from the latest quote and the top levels from the latest book entry."""
    quote, depth = book.get("quote") or {}, book.get("book") or {}
    parts: list[Any] = [html.H4("Top of book")]
    if quote:
        rows = [[_num(quote.get(k, "")) for k in ("bid_qty", "bid_price", "ask_price", "ask_qty")]]
        parts.append(table(["bid qty", "bid", "ask", "ask qty"], rows, table_id="quote-table"))
    else:
        parts.append(html.Div("no data", id="quote-table", className="empty"))
    status = f" ({depth['status']})" if depth.get("status") else ""
    parts.append(html.H4("Book" + status))
    bids = _levels(depth.get("bids", depth.get("b", "[]"))) if depth else []
    asks = _levels(depth.get("asks", depth.get("a", "[]"))) if depth else []
    rows = []
    for i in range(max(len(bids), len(asks))):
        bid = bids[i] if i < len(bids) else ["", ""]
        ask = asks[i] if i < len(asks) else ["", ""]
        rows.append([_num(bid[1]), _num(bid[0]), _num(ask[0]), _num(ask[1])])
    parts.append(table(["bid qty", "bid", "ask", "ask qty"], rows, table_id="book-table"))
    return html.Div(parts)


def _num(text: str) -> str:
    """Drop trailing zeros of a decimal string (``0.00100000`` → ``0.001``)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _avg_price(order: dict[str, str]) -> str:
    """Average fill price from the cumulative quote amount, else the order's limit price."""
    try:
        filled, quote = float(order.get("filled_qty") or 0), float(order.get("cum_quote") or 0)
        limit = float(order.get("price") or 0)
    except ValueError:
        return ""
    if filled > 0 and quote > 0:
        return f"{quote / filled:.2f}"
    return _num(order.get("price", "")) if limit else ""


def orders_view(orders: list[dict[str, str]]) -> html.Table | html.Div:
    """The latest orders with their live state."""
    columns = ["client order id", "symbol", "side", "type", "qty", "state", "filled", "avg price",
               "reason"]  # fmt: skip
    rows = [[o.get("client_order_id", ""), o.get("symbol", ""), o.get("side", ""),
             o.get("order_type", ""), _num(o.get("qty", "")), o.get("state", ""),
             _num(o.get("filled_qty", "")),
             _avg_price(o), o.get("reason", "")[:60]] for o in orders]  # fmt: skip
    return table(columns, rows, table_id="orders-table", empty="no orders yet", first_class="coid")


def positions_view(positions: dict[str, dict[str, str]]) -> html.Table | html.Div:
    """Position, average cost and profit and loss per symbol."""
    columns = ["symbol", "position", "avg cost", "realized PnL", "unrealized PnL", "mark"]
    figures = ("position", "avg_cost", "realized_pnl", "unrealized_pnl", "mark_price")
    rows = [[s, *(p.get(f, "") for f in figures)] for s, p in positions.items()]
    return table(columns, rows, table_id="positions-table", empty="no positions yet")


_STATS = ("frames_per_s", "reconnects", "connections_up", "dead_letters", "partitions_owned",
          "orders_sent", "rejects", "last_order_latency_ms", "adopted",
          "intent_mismatches", "stale_detected", "streams_silent", "quiet_symbols")  # fmt: skip


def _figure(value: Any) -> str:
    """A health figure as the table shows it (a list as its items, comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _venue_clock(health: list[dict[str, Any]]) -> html.Div:
    """One line per stage that estimates the venue's clock: offset, uncertainty, state."""
    lines = []
    for h in health:
        if h.get("venue_clock_offset_ms") is None:
            continue
        state = str(h.get("venue_clock_state", "?"))
        text = (f"venue clock ({h.get('service', '?')} {h.get('instance', '?')}): "
                f"{float(h['venue_clock_offset_ms']):+.1f} ms "
                f"± {float(h.get('venue_clock_uncertainty_ms') or 0):.1f} ms, {state}")  # fmt: skip
        lines.append(text)
    worst = {str(h.get("venue_clock_state")) for h in health}
    return html.Div(
        "; ".join(lines) or "venue clock: not measured",
        id="venue-clock",
        className="alarm" if "beyond" in worst else "",
    )


def health_view(
    view: dict[str, Any], previous: dict[str, Any] | None, now_s: float
) -> tuple[html.Div, dict[str, Any]]:
    """Stage status table, gap/dead-letter totals, alarms, streams with rates, lag, pending.

    ``now_s`` is the wall clock the caller read (this module reads no clock)."""
    stages = []
    for h in view["health"]:
        age = now_s - h.get("updated_ns", 0) / 1e9
        stats = " ".join(f"{k}={_figure(h[k])}" for k in _STATS if h.get(k) not in (None, []))
        status = str(h.get("status", "?"))
        attrs: dict[str, Any] = {"data-service": str(h.get("service", "")), "data-status": status}
        cells = [html.Td(h.get("service", "?")), html.Td(h.get("instance", "?")),
                 html.Td(status, className=f"status-{status}"), html.Td(f"{age:.1f}s"),
                 html.Td(stats)]  # fmt: skip
        stages.append(html.Tr(cells, className="stage", **attrs))
    stage_table: Any = html.Div("no stage reports health", id="health-table", className="empty")
    if stages:
        head = html.Thead(html.Tr([html.Th(c) for c in ("stage", "instance", "status", "updated",
                                                          "stats")]))  # fmt: skip
        stage_table = html.Table([head, html.Tbody(stages)], id="health-table", className="grid")
    lengths = {s["name"]: s["length"] for s in view["streams"]}
    before = (previous or {}).get("lengths", {})
    elapsed = now_s - (previous or {}).get("at", now_s)
    rows = []
    for s in view["streams"]:
        rate = "-"
        if elapsed > 0 and s["name"] in before:
            rate = f"{(s['length'] - before[s['name']]) / elapsed:.1f}"
        groups = ", ".join(f"{g['name']}: lag {g['lag'] if g['lag'] is not None else '?'} "
                           f"pending {g['pending']}" for g in s["groups"]) or "-"  # fmt: skip
        rows.append([s["name"], s["length"], rate, groups])
    totals = {k: sum(s["length"] for s in view["streams"] if s["kind"] == k)
              for k in ("gaps", "dead-letters", "trader-dead-letters")}  # fmt: skip
    dead = totals["dead-letters"] + totals["trader-dead-letters"]
    reconnects = sum(int(h.get("reconnects") or 0) for h in view["health"])
    summary = html.Div(
        f"reconnects {reconnects} · gaps {totals['gaps']} · dead letters {dead}",
        id="pipeline-summary",
    )
    # A stage's alarms (the trader's intent mismatches): one red line each, above the streams.
    alarms = [html.Div(f"{h.get('service', '?')} {h.get('instance', '?')}: {alarm}",
                       className="alarm")
              for h in view["health"] for alarm in h.get("alarms") or []]  # fmt: skip
    streams = table(
        ["stream", "length", "msgs/s", "consumer groups"], rows, table_id="streams-table"
    )
    alarm_box = html.Div(alarms, id="alarms")
    clock = _venue_clock(view["health"])
    state = {"lengths": lengths, "at": now_s}
    return html.Div([stage_table, summary, alarm_box, clock, streams]), state
