"""Keep one market-stream connection's subscriptions and answer its control messages (pure).

Handles Binance's ``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY`` and
``GET_PROPERTY`` with ``{"result": ..., "id": ...}`` answers and the nested error form
``{"error": {"code": N, "msg": "..."}, "id": ...}`` (0 unknown property, 1 bad value type,
2 invalid request, 3 invalid JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "MAX_STREAMS",
    "StreamError",
    "StreamSession",
    "frame",
    "is_valid_stream",
    "streams_from_path",
]

MAX_STREAMS = 1024
_WINDOWS = "(1h|4h|1d)"
_INTERVALS = "(1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)"
_CHANNEL_RE = re.compile(
    r"^(trade|aggTrade|bookTicker|depth(@100ms|@1000ms)?|depth(5|10|20)(@100ms|@1000ms)?"
    rf"|kline_{_INTERVALS}(@\+08:00)?|ticker|miniTicker|ticker_{_WINDOWS}|avgPrice"
    r"|referencePrice|blockTrade)$"
)
_ALL_MARKET_RE = re.compile(rf"^!(miniTicker@arr|ticker@arr|ticker_{_WINDOWS}@arr|bookTicker)$")
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,36}$")


class StreamError(Exception):
    """A control message the venue refuses: stream-protocol ``code`` and ``msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def is_valid_stream(name: str, symbols: Iterable[str]) -> bool:
    """Tell whether ``name`` is a stream of a listed symbol (lower-case symbol, known channel)."""
    if _ALL_MARKET_RE.match(name):
        return True
    symbol, sep, channel = name.partition("@")
    if not sep or symbol != symbol.lower() or not _CHANNEL_RE.match(channel):
        return False
    return symbol.upper() in {s.upper() for s in symbols}


def streams_from_path(tail: str) -> list[str]:
    """Return the stream names in a ``/ws/<tail>`` path (ccxt's ``/ws/0`` names none)."""
    return [part for part in tail.split("/") if "@" in part or part.startswith("!")]


def frame(stream: str, payload: Any, *, combined: bool) -> str:
    """Encode a market event, wrapped as ``{"stream", "data"}`` when combined."""
    body = {"stream": stream, "data": payload} if combined else payload
    return orjson.dumps(body).decode()


class StreamSession:
    """Subscriptions and properties of one market-stream connection."""

    def __init__(self, symbols: Iterable[str], *, combined: bool) -> None:
        self.symbols = tuple(s.upper() for s in symbols)
        self.combined = combined
        self._streams: dict[str, None] = {}  # insertion-ordered set

    @property
    def streams(self) -> list[str]:
        return list(self._streams)

    def __contains__(self, name: object) -> bool:
        return name in self._streams

    def subscribe(self, names: Iterable[str]) -> None:
        """Add streams; raise :class:`StreamError` (code 2) for an invalid one or too many."""
        names = list(names)
        for name in names:
            if not isinstance(name, str) or not is_valid_stream(name, self.symbols):
                raise StreamError(2, "Invalid request: invalid stream")
        if len(set(self._streams) | set(names)) > MAX_STREAMS:
            raise StreamError(2, "Invalid request: too many parameters")
        for name in names:
            self._streams[name] = None

    def handle(self, text: str | bytes) -> dict[str, Any]:
        """Apply one client control message and return the answer to send."""
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return {"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}
        request_id = message.get("id") if isinstance(message, dict) else None
        if isinstance(request_id, (dict, list, float)) or isinstance(request_id, bool):
            request_id = None
        try:
            result = self._apply(message)
        except StreamError as exc:
            return {"error": {"code": exc.code, "msg": exc.msg}, "id": request_id}
        return {"result": result, "id": request_id}

    def _apply(self, message: Any) -> Any:
        if not isinstance(message, dict):
            raise StreamError(2, "Invalid request: expected a JSON object")
        request_id = message.get("id")
        if not (
            request_id is None
            or (isinstance(request_id, int) and not isinstance(request_id, bool))
            or (isinstance(request_id, str) and _ID_RE.match(request_id))
        ):
            raise StreamError(2, "Invalid request: request ID must be an unsigned integer")
        method = message.get("method")
        if method is None:
            raise StreamError(2, "Invalid request: missing field `method`")
        if method not in _METHODS:
            expected = ", ".join(f"`{m}`" for m in _METHODS)
            raise StreamError(
                2, f"Invalid request: unknown variant `{method}`, expected one of {expected}"
            )
        params = message.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            raise StreamError(2, "Invalid request: params must be an array")
        if method == "SUBSCRIBE":
            self.subscribe(params)
            return None
        if method == "UNSUBSCRIBE":
            for name in params:
                if not isinstance(name, str) or not is_valid_stream(name, self.symbols):
                    raise StreamError(2, "Invalid request: invalid stream")
            for name in params:
                self._streams.pop(name, None)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            return self.streams
        if not params or not isinstance(params[0], str):
            raise StreamError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise StreamError(0, "Unknown property")
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) > 2:
            raise StreamError(2, "Invalid request: too many parameters")
        if len(params) < 2 or not isinstance(params[1], bool):
            raise StreamError(1, "Invalid value type: expected Boolean")
        self.combined = params[1]
        return None
