"""Draw a backtest's equity curve and fills as one self-contained Plotly HTML page.

Needs the ``dashboard`` extra (Plotly); ``tickpipe backtest --report FILE.html`` checks for it
before reading any input. Top: equity (realised plus marked PnL) at every fill, with the running
peak, so the drawdown is the gap between them. Bottom: each fill at its price and time, buys and
sells apart, per symbol.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tickpipe.tools.backtest import BacktestResult

__all__ = ["write_report"]


def _time(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


def write_report(path: Path, result: BacktestResult, summary: list[str]) -> None:
    """Write the report of ``result`` to ``path`` (HTML with Plotly inlined)."""
    go: Any = importlib.import_module("plotly.graph_objects")  # the extra, checked by the caller
    subplots: Any = importlib.import_module("plotly.subplots")
    figure: Any = subplots.make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("equity (realised + marked PnL)", "fills"),
    )  # fmt: skip
    curve = result.model.curve
    times = [_time(ts) for ts, _ in curve]
    equity = [float(value) for _, value in curve]
    peaks: list[float] = []
    for value in equity:
        peaks.append(max(value, peaks[-1]) if peaks else max(value, 0.0))
    figure.add_trace(go.Scatter(x=times, y=equity, name="equity", mode="lines"), row=1, col=1)
    figure.add_trace(
        go.Scatter(x=times, y=peaks, name="running peak", mode="lines", line={"dash": "dot"}),
        row=1, col=1,
    )  # fmt: skip
    for symbol in sorted({f.symbol for f in result.model.fills}):
        for side, marker in (("buy", "triangle-up"), ("sell", "triangle-down")):
            fills = [f for f in result.model.fills if f.symbol == symbol and f.side == side]
            if not fills:
                continue
            figure.add_trace(
                go.Scatter(
                    x=[_time(f.ts_event) for f in fills], y=[float(f.price) for f in fills],
                    mode="markers", marker={"symbol": marker, "size": 9},
                    name=f"{symbol} {side}", text=[f"{f.strategy} {f.qty}" for f in fills],
                ),
                row=2, col=1,
            )  # fmt: skip
    figure.update_layout(
        title="tickpipe backtest<br><sup>" + "<br>".join(summary[2:4]) + "</sup>",
        height=800,
    )
    figure.write_html(str(path), include_plotlyjs=True, full_html=True)
