"""Run one Alpaca trading-stream session: authenticate, listen, trade updates (pure, no I/O).

Both auth forms are accepted: ``{"action":"auth","key","secret"}`` and the legacy
``{"action":"authenticate","data":{"key_id","secret_key"}}``; both are answered with
``{"stream":"authorization","data":{...,"action":"authenticate"}}``. ``listen`` replaces the
set of streams (only ``trade_updates`` exists here) and is answered with ``listening``.
Replies are objects, not arrays. A frame that is not a JSON/msgpack object is answered with
the venue's error shape ``{"action":"error","data":{"error_message":...}}``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from tickpipe.mock_ws.alpaca.codec import decode_client

__all__ = ["STREAMS", "TradingSession"]

STREAMS = ("trade_updates",)


def _authorization(status: str, action: str, message: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status, "action": action}
    if message is not None:
        data["message"] = message
    return {"stream": "authorization", "data": data}


class TradingSession:
    """One client of ``/stream``; see the module docstring."""

    def __init__(self, conn_id: int, *, credentials: Mapping[str, str]) -> None:
        self.conn_id = conn_id
        self._credentials = dict(credentials)
        self.authorized = False
        self.streams: tuple[str, ...] = ()

    def listening(self, stream: str) -> bool:
        """Return whether updates of ``stream`` go to this client."""
        return self.authorized and stream in self.streams

    def receive(self, data: str | bytes) -> list[dict[str, Any]]:
        """Handle one client frame; return the messages to send back."""
        try:
            message = decode_client(data)
        except ValueError:
            return [{"action": "error", "data": {"error_message": "invalid syntax"}}]
        if not isinstance(message, dict):
            return [{"action": "error", "data": {"error_message": "invalid syntax"}}]
        action = message.get("action")
        raw_body = message.get("data")
        body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        if action == "auth":
            return [self._authenticate(message.get("key"), message.get("secret"))]
        if action == "authenticate":
            return [self._authenticate(body.get("key_id"), body.get("secret_key"))]
        if action == "listen":
            if not self.authorized:
                return [_authorization("unauthorized", "listen")]
            wanted = body.get("streams")
            if not isinstance(wanted, list):
                return [{"action": "error", "data": {"error_message": "invalid syntax"}}]
            self.streams = tuple(s for s in STREAMS if s in wanted)
            return [{"stream": "listening", "data": {"streams": list(self.streams)}}]
        return [{"action": "error", "data": {"error_message": "invalid action"}}]

    def _authenticate(self, key: Any, secret: Any) -> dict[str, Any]:
        expected = self._credentials.get(key) if isinstance(key, str) else None
        if (
            expected is None
            or not isinstance(secret, str)
            or not hmac.compare_digest(secret.encode(), expected.encode())
        ):
            self.authorized = False
            return _authorization("unauthorized", "authenticate", "access key verification failed")
        self.authorized = True
        return _authorization("authorized", "authenticate")
