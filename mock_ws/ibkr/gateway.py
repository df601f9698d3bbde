"""The gateway's brokerage session and its pacing rules, as the IBKR mock keeps them (pure).

Session model (Client Portal Web API docs, "Authentication" and "Session management"): the user
logged in through the gateway's web page, so the gateway holds one brokerage session for its
``api`` cookie / ``session`` token. ``POST /tickle`` (or the WebSocket ``tic``) keeps it alive; a
session with no keep-alive for ``timeout_s`` expires silently (``authenticated`` false, market
data stops, ``/iserver`` answers 401). A competing login elsewhere (``/_mock/ibkr/compete``) logs
this session out with ``competing: true``; ``POST /iserver/reauthenticate`` takes it back. After
every (re-)authentication ``GET /iserver/accounts`` must be called before market data and orders.

Pacing (Web API docs, "Pacing Limitations"): at most ``global_per_s`` requests a second per
client address ("Users making requests via the CP Gateway tool are restricted to 10 requests per
second"), and the per-endpoint limits of the docs' table, each for the method the table names
(:data:`ENDPOINT_LIMITS`): ``GET /iserver/marketdata/snapshot`` 10 a second, ``GET /tickle`` 1
a second, ``GET /portfolio/accounts`` and the live orders and trades (the table's
``/iserver/orders`` and ``/iserver/trades``) 1 per 5 s. Each is a count over a sliding window,
so a burst up to the count is served at once and the next one waits for the window. ``POST
/tickle`` (the keep-alive the reference documents, which clients send) has no row of its own and
counts only towards the global limit; neither has ``/iserver/accounts``. A request over an
endpoint's limit is answered 429 on its own; going over the global limit puts the address in the
penalty box ("violator IP addresses may be put in a penalty box for 10 minutes"): every request
answers 429 for ``penalty_s``. Requests sent during the penalty are refused and counted as
``penalty_violations``.

WebSocket authentication (Web API docs, "Websockets"; ``../shared/protocols.md`` §4): the
``session`` value of ``POST /tickle`` authenticates a socket either as the ``api`` cookie of the
upgrade or as ``{"session": ...}``, the first message. Clients written from the docs send the
cookie in both forms, the bare token and the JSON object ``api={"session":"<token>"}`` (ibind's
``IbkrWsClient._get_cookie``; its maintainer cites the docs' WebSocket connection guide in
ibind issue #25): :func:`session_of_cookie` reads every one of them.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tickpipe.common.units import NS_PER_S

__all__ = ["ENDPOINT_LIMITS", "Gateway", "Pacer", "session_of_cookie"]

#: (method, path prefix) -> (requests, window seconds): the docs' per-endpoint table, for the
#: endpoints the mock serves (``/iserver/orders`` and ``/iserver/trades`` there are the live
#: orders and trades of ``/iserver/account/orders`` and ``/iserver/account/trades``).
ENDPOINT_LIMITS: dict[tuple[str, str], tuple[int, float]] = {
    ("GET", "/v1/api/iserver/marketdata/snapshot"): (10, 1.0),
    ("GET", "/v1/api/tickle"): (1, 1.0),
    ("GET", "/v1/api/iserver/account/orders"): (1, 5.0),
    ("GET", "/v1/api/iserver/account/trades"): (1, 5.0),
    ("GET", "/v1/api/portfolio/accounts"): (1, 5.0),
}


def session_of_cookie(header: str) -> str | None:
    """Return the session the ``api`` cookie of a ``Cookie`` header names (``None``: none).

    The value is the bare token or the JSON ``{"session": "<token>"}``, as sent or
    percent-encoded.
    """
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep or name.strip() != "api":
            continue
        value = value.strip()
        if value[:3].upper() == "%7B":
            value = unquote(value)
        if value.startswith("{"):
            try:
                body = json.loads(value)
            except ValueError:
                return None
            session = body.get("session") if isinstance(body, dict) else None
            return session if isinstance(session, str) and session else None
        return value.strip('"') or None
    return None


@dataclass
class Pacer:
    """Per-address request pacing with a penalty box (see the module docstring)."""

    global_per_s: int = 10
    penalty_s: float = 600.0
    penalties: int = 0
    penalty_violations: int = 0
    refused: int = 0
    _recent: dict[str, deque[int]] = field(default_factory=dict)
    _endpoint: dict[tuple[str, str, str], deque[int]] = field(default_factory=dict)
    _penalty_until: dict[str, int] = field(default_factory=dict)

    def penalised(self, address: str, now_ns: int) -> bool:
        return now_ns < self._penalty_until.get(address, 0)

    def admit(self, address: str, method: str, path: str, now_ns: int) -> str | None:
        """Return ``None`` to serve the request, else why it is answered 429."""
        if self.penalised(address, now_ns):
            self.penalty_violations += 1
            self.refused += 1
            return "penalty box"
        recent = self._recent.setdefault(address, deque())
        while recent and recent[0] <= now_ns - NS_PER_S:
            recent.popleft()
        if len(recent) >= self.global_per_s:
            self._penalty_until[address] = now_ns + int(self.penalty_s * NS_PER_S)
            self.penalties += 1
            self.refused += 1
            recent.clear()
            return "global rate limit exceeded: penalty box"
        for (verb, prefix), (count, window_s) in ENDPOINT_LIMITS.items():
            if verb == method and path.startswith(prefix):
                key = (address, verb, prefix)
                times = self._endpoint.setdefault(key, deque())
                while times and times[0] <= now_ns - int(window_s * NS_PER_S):
                    times.popleft()
                if len(times) >= count:
                    self.refused += 1
                    return f"{prefix} allows {count} request(s) per {window_s:g} s"
                times.append(now_ns)
        recent.append(now_ns)
        return None

    def status(self, now_ns: int) -> dict[str, Any]:
        return {
            "penalties": self.penalties,
            "penalty_violations": self.penalty_violations,
            "refused": self.refused,
            "penalised": sorted(a for a in self._penalty_until if self.penalised(a, now_ns)),
        }


class Gateway:
    """The brokerage session behind the gateway (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: int,
        now_ns: int,
        timeout_s: float = 360.0,
        account_id: str = "DU1234567",
        username: str = "mockuser1",
    ) -> None:
        self._rng = random.Random(f"ibkr-gateway:{seed}")
        self.account_id = account_id
        self.username = username
        self.timeout_ns = int(timeout_s * NS_PER_S)
        self.session = self._new_session()
        self.authenticated = True
        self.competing = False
        self.accounts_queried = False
        self.expirations = 0
        self.last_alive_ns = now_ns

    def _new_session(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def check(self, now_ns: int) -> bool:
        """Expire the session when its keep-alive is overdue; return True when it just did."""
        if self.authenticated and now_ns - self.last_alive_ns > self.timeout_ns:
            self.authenticated = False
            self.accounts_queried = False
            self.expirations += 1
            return True
        return False

    def keep_alive(self, now_ns: int) -> None:
        """A ``/tickle`` or WebSocket ``tic``: the session lives on (if it still does)."""
        self.check(now_ns)
        if self.authenticated:
            self.last_alive_ns = now_ns

    def auth_status(self) -> dict[str, Any]:
        return {
            "authenticated": self.authenticated,
            "competing": self.competing,
            "connected": True,
            "message": "",
            "MAC": "98:F2:B3:23:BF:A0",
            "serverInfo": {"serverName": "JifN19053", "serverVersion": "Build 10.25.0p"},
            "fail": "",
        }

    def tickle(self, now_ns: int) -> dict[str, Any]:
        """Answer ``POST /tickle``."""
        self.keep_alive(now_ns)
        return {
            "session": self.session,
            "ssoExpires": max(0, (self.last_alive_ns + self.timeout_ns - now_ns) // 1_000_000),
            "collission": False,
            "userId": 12345678,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": self.auth_status()},
        }

    def reauthenticate(self, now_ns: int) -> dict[str, Any]:
        """``POST /iserver/reauthenticate``: take the session back (a competing one included)."""
        self.authenticated = True
        self.competing = False
        self.accounts_queried = False
        self.last_alive_ns = now_ns
        return {"message": "triggered"}

    def compete(self) -> None:
        """Another login took the session: this one is logged out, ``competing`` true."""
        self.authenticated = False
        self.competing = True
        self.accounts_queried = False

    def logout(self) -> dict[str, Any]:
        self.authenticated = False
        self.accounts_queried = False
        self.session = self._new_session()
        return {"status": True}

    def portfolio_accounts(self) -> list[dict[str, Any]]:
        """Answer ``GET /portfolio/accounts``."""
        acct = self.account_id
        return [
            {
                "id": acct,
                "accountId": acct,
                "accountVan": acct,
                "accountTitle": "Mock User",
                "displayName": acct,
                "accountAlias": None,
                "currency": "USD",
                "type": "DEMO",
                "tradingType": "STKNOPT",
                "covestor": False,
                "parent": {},
                "desc": acct,
            }
        ]

    def accounts(self) -> dict[str, Any]:
        """Answer ``GET /iserver/accounts`` (and note that it was called)."""
        self.accounts_queried = True
        acct = self.account_id
        return {
            "accounts": [acct],
            "acctProps": {
                acct: {
                    "hasChildAccounts": False,
                    "supportsCashQty": True,
                    "supportsFractions": False,
                }
            },
            "aliases": {acct: acct},
            "allowFeatures": {"showGFIS": True, "allowCrypto": False},
            "chartPeriods": {"STK": ["*"]},
            "groups": [],
            "profiles": [],
            "selectedAccount": acct,
            "serverInfo": {"serverName": "JifN19053", "serverVersion": "Build 10.25.0p"},
            "sessionId": self.session[:16],
            "isFT": False,
            "isPaper": True,
        }
