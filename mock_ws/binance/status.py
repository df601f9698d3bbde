"""Build the mock's ``GET /_mock/status`` body: connections, subscriptions, trades, orders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mock_ws.binance.server import BinanceMock

__all__ = ["server_status"]


def server_status(server: BinanceMock) -> dict[str, Any]:
    """Return connections, subscriptions, trades generated and orders, for humans and tests."""
    subscriptions: dict[str, int] = {}
    for conn in server.connections.values():
        for name in conn.stream.streams if conn.stream else []:
            subscriptions[name] = subscriptions.get(name, 0) + 1
    return {
        "uptime_s": round((server.clock() - server.started_ns) / 1e9, 3),
        "connections": {
            "total": len(server.connections),
            "stream": sum(c.kind == "stream" for c in server.connections.values()),
            "api": sum(c.kind == "api" for c in server.connections.values()),
        },
        "subscriptions": subscriptions,
        "user_data_subscriptions": len(server.api.subscribed()),
        "connection_list": [
            {
                "conn": c.conn_id,
                "kind": c.kind,
                "path": c.path,
                "streams": c.stream.streams if c.stream else [],
                "subscription_id": c.api.subscription_id if c.api else None,
            }
            for c in server.connections.values()
        ],
        "trades_generated": server.market.trades_generated(),
        "last_price": {s: server.market.last_price(s) for s in server.market.symbols},
        "orders": len(server.engine.orders),
        "balances": {a: f"{v:f}" for a, v in server.engine.balances.items()},
        "frames_sent": server.frames_sent,
        "replay": None
        if server.replayer is None
        else {"sent": server.replayer.sent, "done": server.replayer.done},
    }
