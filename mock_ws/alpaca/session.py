"""Run one Alpaca market-data stream session: connect, auth, subscribe, errors (pure, no I/O).

Flow: ``opening()`` yields ``[{"T":"success","msg":"connected"}]`` (and, when the upgrade
request carried ``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers, the auth outcome at once);
``receive()`` handles ``auth``, ``subscribe`` and ``unsubscribe``; ``tick()`` enforces the auth
window. Every answer is a :class:`Reply` of control messages (each goes out as a one-element
array) and, when the venue would hang up, a close code.

Errors close the connection for 404 auth timeout, 406 connection limit, 407 slow client and
409 insufficient subscription; the others (400, 401, 402, 403, 405, 410) leave it open.
Subscribing adds, unsubscribing subtracts; every change is answered with the full set.
On stock feeds ``corrections`` and ``cancelErrors`` follow ``trades`` automatically.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tickpipe.common.units import NS_PER_S
from tickpipe.mock_ws.alpaca.codec import decode_client

__all__ = [
    "CRYPTO_CHANNELS",
    "ERRORS",
    "FEEDS",
    "STOCK_CHANNELS",
    "ConnectionRegistry",
    "DataSession",
    "Feed",
    "Reply",
    "error_message",
]

ERRORS: dict[int, str] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    500: "internal error",
}
FATAL_ERRORS = frozenset({404, 406, 407, 409})
CLOSE_POLICY_VIOLATION = 1008

#: Subscription keys in reply order; corrections/cancelErrors are derived from trades.
STOCK_CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "corrections",
    "cancelErrors",
)
CRYPTO_CHANNELS = ("trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars")
_DERIVED = ("corrections", "cancelErrors")
_ALL_CHANNELS = frozenset(STOCK_CHANNELS) | frozenset(CRYPTO_CHANNELS) | {"imbalances", "news"}
_STOCK_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.]{0,15}$")
_CRYPTO_SYMBOL = re.compile(r"^[A-Z0-9]{1,12}/[A-Z0-9]{1,12}$")


@dataclass(frozen=True)
class Feed:
    """One market-data endpoint: its path, asset class, channels and plan limits."""

    path: str
    asset_class: str  # "stocks" or "crypto"
    channels: tuple[str, ...]
    symbol_limit: int | None = None  # distinct trades+quotes symbols; None = unlimited

    def valid_symbol(self, symbol: Any) -> bool:
        if symbol == "*":
            return True
        if not isinstance(symbol, str):
            return False
        pattern = _CRYPTO_SYMBOL if self.asset_class == "crypto" else _STOCK_SYMBOL
        return bool(pattern.match(symbol))


FEEDS: dict[str, Feed] = {
    "/v2/iex": Feed("/v2/iex", "stocks", STOCK_CHANNELS, symbol_limit=30),
    "/v2/sip": Feed("/v2/sip", "stocks", STOCK_CHANNELS),
    "/v2/test": Feed("/v2/test", "stocks", STOCK_CHANNELS, symbol_limit=30),
    "/v1beta3/crypto/us": Feed("/v1beta3/crypto/us", "crypto", CRYPTO_CHANNELS),
}


def error_message(code: int) -> dict[str, Any]:
    """Return the venue's error message for ``code``."""
    return {"T": "error", "code": code, "msg": ERRORS[code]}


@dataclass
class Reply:
    """What a session wants sent: control messages, symbols newly added, and a close code."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)
    close_code: int | None = None

    def error(self, code: int) -> Reply:
        self.messages.append(error_message(code))
        if code in FATAL_ERRORS:
            self.close_code = CLOSE_POLICY_VIOLATION
        return self


class ConnectionRegistry:
    """Count authenticated sessions per (endpoint, key) against a per-endpoint limit."""

    def __init__(self, limit: int = 1) -> None:
        self.limit = limit
        self._holders: dict[tuple[str, str], set[int]] = {}

    def acquire(self, endpoint: str, key: str, conn_id: int) -> bool:
        holders = self._holders.setdefault((endpoint, key), set())
        if conn_id not in holders and len(holders) >= self.limit:
            return False
        holders.add(conn_id)
        return True

    def release(self, conn_id: int) -> None:
        for holders in self._holders.values():
            holders.discard(conn_id)

    def count(self, endpoint: str, key: str) -> int:
        return len(self._holders.get((endpoint, key), ()))


class DataSession:
    """One client's session on one feed; see the module docstring."""

    def __init__(
        self,
        feed: Feed,
        conn_id: int,
        connected_ns: int,
        *,
        credentials: Mapping[str, str],
        registry: ConnectionRegistry,
        entitled: bool = True,
        auth_timeout_s: float = 10.0,
        header_key: str | None = None,
        header_secret: str | None = None,
    ) -> None:
        self.feed = feed
        self.conn_id = conn_id
        self.connected_ns = connected_ns
        self._credentials = dict(credentials)
        self._registry = registry
        self._entitled = entitled
        self._auth_deadline_ns = connected_ns + int(auth_timeout_s * NS_PER_S)
        self._header_auth = (header_key, header_secret) if header_key is not None else None
        self.authenticated = False
        self.closed = False
        self.key: str | None = None
        self.subscriptions: dict[str, set[str]] = {c: set() for c in feed.channels}

    # ---- inputs -----------------------------------------------------------------------------

    def opening(self) -> Reply:
        """Return the greeting, plus the auth outcome when the upgrade carried key headers."""
        reply = Reply([{"T": "success", "msg": "connected"}])
        if self._header_auth is not None:
            key, secret = self._header_auth
            self._authenticate(key, secret or "", reply)
            if not self.authenticated and reply.close_code is None:
                reply.close_code = CLOSE_POLICY_VIOLATION  # bad header credentials: hang up
        return self._finish(reply)

    def receive(self, data: str | bytes, now_ns: int) -> Reply:
        """Handle one client frame (JSON text or msgpack binary)."""
        reply = self.tick(now_ns)
        if reply.close_code is not None:
            return reply
        try:
            message = decode_client(data)
        except ValueError:
            return reply.error(400)
        if not isinstance(message, dict) or not isinstance(message.get("action"), str):
            return reply.error(400)
        action = message["action"]
        if action == "auth":
            if self.authenticated:
                return reply.error(403)
            key, secret = message.get("key"), message.get("secret")
            if not isinstance(key, str) or not isinstance(secret, str):
                return reply.error(402)
            self._authenticate(key, secret, reply)
            return self._finish(reply)
        if action not in ("subscribe", "unsubscribe"):
            return reply.error(400)
        if not self.authenticated:
            return reply.error(401)
        return self._change(message, adding=action == "subscribe", reply=reply)

    def tick(self, now_ns: int) -> Reply:
        """Return the 404 auth timeout once the window has passed without a successful auth."""
        reply = Reply()
        if not self.authenticated and not self.closed and now_ns >= self._auth_deadline_ns:
            reply.error(404)
        return self._finish(reply)

    def slow_client(self) -> Reply:
        """Return the 407 slow-client error and the close."""
        return self._finish(Reply().error(407))

    def close(self) -> None:
        """Release the connection slot."""
        self.closed = True
        self._registry.release(self.conn_id)

    # ---- queries ----------------------------------------------------------------------------

    def wants(self, channel: str, symbol: str) -> bool:
        """Return whether a message on ``channel`` for ``symbol`` goes to this client."""
        symbols = self.subscriptions.get(channel)
        return symbols is not None and (symbol in symbols or "*" in symbols)

    def subscription_message(self) -> dict[str, Any]:
        """Return the full ``T:"subscription"`` message for the current set."""
        out: dict[str, Any] = {"T": "subscription"}
        for channel in self.feed.channels:
            out[channel] = sorted(self.subscriptions[channel])
        return out

    # ---- internals --------------------------------------------------------------------------

    def _finish(self, reply: Reply) -> Reply:
        if reply.close_code is not None:
            self.close()
        return reply

    def _authenticate(self, key: str, secret: str, reply: Reply) -> None:
        expected = self._credentials.get(key)
        if expected is None or not hmac.compare_digest(secret.encode(), expected.encode()):
            reply.error(402)
            return
        if not self._entitled:
            reply.error(409)
            return
        if not self._registry.acquire(self.feed.path, key, self.conn_id):
            reply.error(406)
            return
        self.authenticated = True
        self.key = key
        reply.messages.append({"T": "success", "msg": "authenticated"})

    def _change(self, message: dict[str, Any], *, adding: bool, reply: Reply) -> Reply:
        requested: dict[str, list[str]] = {}
        for channel, symbols in message.items():
            if channel == "action" or channel in _DERIVED:
                continue
            if channel not in self.feed.channels:
                return reply.error(410 if channel in _ALL_CHANNELS else 400)
            if not isinstance(symbols, list) or not all(map(self.feed.valid_symbol, symbols)):
                return reply.error(400)
            requested[channel] = symbols
        proposed = {c: set(s) for c, s in self.subscriptions.items()}
        for channel, symbols in requested.items():
            if adding:
                proposed[channel] |= set(symbols)
            else:
                proposed[channel] -= set(symbols)
        if "corrections" in proposed:
            proposed["corrections"] = set(proposed["trades"])
            proposed["cancelErrors"] = set(proposed["trades"])
        limit = self.feed.symbol_limit
        counted = (proposed["trades"] | proposed["quotes"]) - {"*"}
        if adding and limit is not None and len(counted) > limit:
            return reply.error(405)
        for channel, symbols in proposed.items():
            new = sorted(symbols - self.subscriptions[channel])
            if new:
                reply.added[channel] = new
        self.subscriptions = proposed
        reply.messages.append(self.subscription_message())
        return reply
