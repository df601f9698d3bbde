"""Build the Dash application: layout, incremental callbacks, and the optional access token.

Callbacks run in the web server's threads; they reach Redis through ``call``, which runs a
reader coroutine on the stage's event loop and returns its result. Every figure update after the
first is a :class:`dash.Patch` built from entries newer than the ids the browser holds.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dash import Dash, Input, Output, State, ctx, dcc, html
from flask import Response, request

from tickpipe.common.settings import Settings
from tickpipe.dashboard import reader, views

__all__ = ["TOKEN_COOKIE", "build_app"]

T = TypeVar("T")
#: Run ``read(redis)`` on the stage's event loop and return its result.
Call = Callable[[Callable[[Any], Awaitable[Any]]], Any]

TOKEN_COOKIE = "tickpipe_token"

CSS = """
body { font-family: system-ui, sans-serif; margin: 12px; background: #fafafa; color: #222; }
h1 { font-size: 20px; margin: 4px 0 8px; } h3 { margin: 14px 0 6px; } h4 { margin: 8px 0 4px; }
.row { display: flex; gap: 16px; flex-wrap: wrap; }
.col { flex: 1 1 420px; min-width: 0; overflow-x: auto; }
table.grid { border-collapse: collapse; font-size: 12px; width: 100%; }
table.grid td, table.grid th { border-bottom: 1px solid #ddd; padding: 2px 6px; text-align: left; }
.status-ok { color: #1a9850; font-weight: bold; } .empty { color: #888; font-style: italic; }
td.coid { max-width: 150px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#pipeline-summary { margin: 6px 0; font-size: 13px; }
.alarm { color: #b2182b; font-weight: bold; margin: 2px 0; } .status-standby { color: #666; }
"""


def _authorised(token: str) -> bool:
    offered = (
        request.args.get("token")
        or request.cookies.get(TOKEN_COOKIE)
        or request.headers.get("X-Tickpipe-Token")
        or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    )
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def _protect(app: Dash, token: str) -> None:
    def check() -> Response | None:
        if _authorised(token):
            return None
        return Response("401 Unauthorized: pass ?token=...\n", status=401, mimetype="text/plain")

    def remember(response: Response) -> Response:
        if request.args.get("token") and _authorised(token):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    app.server.before_request(check)
    app.server.after_request(remember)


def _layout(settings: Settings, refresh_ms: int) -> html.Div:
    choices = [{"label": label, "value": value} for label, value in reader.symbol_choices(settings)]
    venues = ", ".join(settings.all_venues())
    return html.Div([
        html.H1(f"tickpipe · {venues} · namespace {settings.namespace}"),
        html.Div(className="row", children=[
            dcc.Dropdown(choices, choices[0]["value"], id="symbol", clearable=False,
                         style={"width": "220px"}),
            dcc.RadioItems(["1s", "1m"], "1s", id="interval", inline=True),
        ]),
        html.Div(className="row", children=[
            html.Div(className="col", style={"flex": "3 1 640px"}, children=[
                dcc.Graph(id="chart", config={"displaylogo": False}),
            ]),
            html.Div(id="book", className="col", style={"flex": "1 1 260px"}),
        ]),
        html.Div(className="row", children=[
            html.Div(className="col", children=[html.H3("Orders"), html.Div(id="orders")]),
            html.Div(className="col", children=[html.H3("Positions and PnL"),
                                                html.Div(id="positions")]),
        ]),
        html.H3("Pipeline health"),
        html.Div(id="health"),
        html.H3("Latency, venue time to order sent"),
        html.Div(id="latency"),
        dcc.Store(id="chart-state"),
        dcc.Store(id="health-state"),
        dcc.Interval(id="tick", interval=refresh_ms),
    ])  # fmt: skip


def build_app(settings: Settings, call: Call, *, token: str = "", refresh_ms: int = 1000) -> Dash:
    """Return the dashboard app; ``call(read)`` runs ``read(redis)`` and returns its result."""
    app = Dash(__name__, title="tickpipe", update_title="")
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    app.layout = _layout(settings, refresh_ms)
    if token:
        _protect(app, token)

    @app.callback(
        Output("chart", "figure"),
        Output("chart-state", "data"),
        Input("tick", "n_intervals"),
        Input("symbol", "value"),
        Input("interval", "value"),
        State("chart-state", "data"),
    )
    def chart(_: int | None, symbol: str, interval: str, state: dict[str, Any] | None) -> Any:
        one, name = reader.settings_of(settings, symbol)
        fresh = (
            state is None
            or ctx.triggered_id in ("symbol", "interval")
            or state.get("symbol") != name
            or state.get("interval") != interval
        )
        ids = None if fresh or state is None else state["ids"]
        update = call(lambda r: reader.read_chart(r, one, name, interval, ids))
        if fresh or state is None:
            return views.chart_figure(name, interval, update)
        return views.chart_patch(update, state)

    @app.callback(
        Output("book", "children"), Input("tick", "n_intervals"), Input("symbol", "value")
    )
    def book(_: int | None, symbol: str) -> Any:
        one, name = reader.settings_of(settings, symbol)
        return views.book_view(call(lambda r: reader.read_book(r, one, name)))

    @app.callback(
        Output("orders", "children"),
        Output("positions", "children"),
        Input("tick", "n_intervals"),
    )
    def trading(_: int | None) -> Any:
        orders, positions = call(lambda r: reader.read_trading(r, settings))
        return views.orders_view(orders), views.positions_view(positions)

    @app.callback(
        Output("health", "children"),
        Output("health-state", "data"),
        Output("latency", "children"),
        Input("tick", "n_intervals"),
        State("health-state", "data"),
    )
    def health(_: int | None, previous: dict[str, Any] | None) -> Any:
        view, state = views.health_view(
            call(lambda r: reader.read_health_view(r, settings)), previous, time.time()
        )
        rows = call(lambda r: reader.read_latency(r, settings))
        latency = views.table(
            ["hop", "p50 ms", "p95 ms", "samples"],
            [[r["hop"], r["p50_ms"], r["p95_ms"], r["n"]] for r in rows],
            table_id="latency-table",
        )
        return view, state, latency

    return app
