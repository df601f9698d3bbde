"""Talk to the IBKR gateway's REST API: the venue's one boundary with ``aiohttp``.

Every request waits for the :class:`~venues.ibkr.pacing.RestBudget` (one budget per client,
requests one after the other), then goes out once; a 429 starts the penalty, during which
nothing leaves (:class:`~common.errors.RateLimited` with the penalty's seconds). A request that
could not connect raises :class:`VenueUnavailable`; one written but not answered raises
:class:`AmbiguousOutcome` (:func:`common.http.send_json`). The gateway serves a self-signed
certificate: ``TICKPIPE_IBKR_VERIFY_TLS=0`` accepts it (loopback only is the gateway's own advice).

Besides the raw :meth:`IbkrRest.request`: ``POST /tickle`` (keep-alive; its ``session`` is the
WebSocket's first message), ``/iserver/auth/status``, ``POST /iserver/reauthenticate``,
``GET /iserver/accounts`` and the contract lookup symbol -> conid (``/trsrv/stocks``, then
``/iserver/secdef/search`` for what it does not know), cached for the client's life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from tickpipe.common.errors import ConfigError, RateLimited, VenueUnavailable
from tickpipe.common.http import Answer, send_json
from tickpipe.common.settings import Settings
from tickpipe.common.tls import http_ssl
from tickpipe.venues.ibkr.pacing import RestBudget

__all__ = ["Answer", "IbkrRest", "rest_from_settings"]

log = logging.getLogger("tickpipe.venues.ibkr")


class IbkrRest:
    """A paced HTTP client for one gateway (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        *,
        verify_tls: bool = True,
        budget: RestBudget | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.verify_tls = verify_tls
        self.budget = budget or RestBudget()
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, sock_connect=connect_timeout_s
        )
        self._turn = asyncio.Lock()
        self.conids: dict[str, int] = {}
        self.requests = 0
        self.refused = 0

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> Answer:
        """Send one request when the budget allows; return the answer (429: raise).

        The wait for an endpoint's own limit (the order list's 1 per 5 s) is taken before the
        turn, so it holds up no request to another endpoint (an order waiting behind it)."""
        await asyncio.sleep(self.budget.endpoint_delay_ns(method, path, self.clock()) / 1e9)
        async with self._turn:
            await self._wait_turn(method, path)
            self.budget.sent(method, path, self.clock())
            answer = await self._send(method, path, query, body)
            if answer.status == 429:
                self.refused += 1
                penalty_s = self.budget.refused(self.clock(), method, path)
                log.warning(
                    "the gateway answered 429: %s for %.1f s",
                    "the endpoint waits"
                    if penalty_s < self.budget.penalty_ns / 1e9
                    else "nothing is sent",
                    penalty_s,
                    extra={"method": method, "path": path, "penalties": self.budget.penalties},
                )
                raise RateLimited(f"{method} {path}: 429 from the gateway", retry_after_s=penalty_s)
            self.budget.answered()
            return answer

    async def _wait_turn(self, method: str, path: str) -> None:
        """Sleep until the budget lets ``method path`` leave (re-checked after each sleep)."""
        wait_ns = self.budget.delay_ns(method, path, self.clock())
        for _ in range(1_000_000):
            if wait_ns <= 0:
                return
            await asyncio.sleep(wait_ns / 1e9)
            wait_ns = self.budget.delay_ns(method, path, self.clock())

    async def _send(self, method: str, path: str, query: Any, body: Any) -> Answer:
        self.requests += 1
        # One connection a request: requests are few and paced, and nothing stays open for a
        # stage to close when it stops.
        connector = aiohttp.TCPConnector(ssl=http_ssl(self.verify_tls))
        async with aiohttp.ClientSession(timeout=self.timeout, connector=connector) as client:
            return await send_json(client, method, self.base_url, path, query=query, body=body)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = await self.request(method, path, **kwargs)
        if answer.status >= 400:
            raise VenueUnavailable(f"{method} {path}: HTTP {answer.status} {answer.body!r}")
        return answer.body

    # -- session ---------------------------------------------------------------------------------
    async def tickle(self) -> dict[str, Any]:
        """``POST /tickle``: keep the session alive; the answer holds the ``session`` token."""
        body = await self._json("POST", "/tickle")
        return body if isinstance(body, dict) else {}

    async def auth_status(self) -> dict[str, Any]:
        body = await self._json("POST", "/iserver/auth/status")
        return body if isinstance(body, dict) else {}

    async def reauthenticate(self) -> None:
        await self._json("POST", "/iserver/reauthenticate")

    async def portfolio_accounts(self) -> list[str]:
        """``GET /portfolio/accounts``: the account ids, without ``/iserver/accounts``'s pace."""
        body = await self._json("GET", "/portfolio/accounts")
        items = body if isinstance(body, list) else []
        return [str(a.get("accountId") or a.get("id")) for a in items if isinstance(a, dict)]

    async def accounts(self) -> list[str]:
        """``GET /iserver/accounts`` (needed before market data and orders): the account ids."""
        body = await self._json("GET", "/iserver/accounts")
        accounts = body.get("accounts") if isinstance(body, dict) else None
        return [str(a) for a in accounts] if isinstance(accounts, list) else []

    # -- contracts -------------------------------------------------------------------------------
    async def conids_of(self, symbols: Iterable[str]) -> dict[str, int]:
        """Return the conid of each symbol (US stocks), looked up once and cached."""
        wanted = [s for s in dict.fromkeys(symbols) if s not in self.conids]
        if wanted:
            found = await self._json("GET", "/trsrv/stocks", query={"symbols": ",".join(wanted)})
            for symbol in wanted:
                conid = _stock_conid(found.get(symbol) if isinstance(found, dict) else None)
                if conid is None:
                    conid = await self._search(symbol)
                if conid is None:
                    raise ConfigError(f"IBKR knows no stock {symbol!r}: check TICKPIPE_SYMBOLS")
                self.conids[symbol] = conid
        return {s: self.conids[s] for s in symbols}

    async def _search(self, symbol: str) -> int | None:
        found = await self._json("GET", "/iserver/secdef/search", query={"symbol": symbol})
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and str(item.get("symbol", "")).upper() == symbol:
                try:
                    return int(item["conid"])
                except (KeyError, TypeError, ValueError):
                    continue
        return None

    async def aclose(self) -> None:
        """Nothing stays open between requests (kept for the callers of the other clients)."""


def _stock_conid(entries: Any) -> int | None:
    """The US-listed contract of a ``/trsrv/stocks`` entry (its first company)."""
    for company in entries if isinstance(entries, list) else []:
        contracts = company.get("contracts") if isinstance(company, dict) else None
        for contract in contracts if isinstance(contracts, list) else []:
            if isinstance(contract, dict) and contract.get("isUS") and "conid" in contract:
                return int(contract["conid"])
    return None


def rest_from_settings(settings: Settings) -> IbkrRest:
    """Build the client from settings (the gateway holds the login: nothing secret here)."""
    budget = RestBudget(settings.ibkr_rest_per_s, settings.ibkr_penalty_s)
    return IbkrRest(settings.ibkr_rest_url, verify_tls=settings.ibkr_verify_tls, budget=budget)
