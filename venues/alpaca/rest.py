"""Talk to Alpaca's Trading API over HTTP: the trader's one boundary with ``aiohttp``.

Each request carries the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers and has a total
timeout. A request that could not even connect raises :class:`VenueUnavailable` (it certainly did
not reach the venue); one that was written but got no full answer (timeout, dropped connection)
raises :class:`~common.errors.AmbiguousOutcome`. Answers come back whole as :class:`Answer` for
:func:`venues.alpaca.orders.classify` to read.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from tickpipe.common.errors import ConfigError
from tickpipe.common.http import Answer, send_json
from tickpipe.common.settings import Settings
from tickpipe.common.tls import http_connector
from tickpipe.venues.alpaca.orders import auth_headers

__all__ = ["AlpacaRest", "Answer", "rest_from_settings"]

log = logging.getLogger("tickpipe.trader")


class AlpacaRest:
    """A pooled HTTP client for the Trading API, opened lazily by the first request."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        api_secret: str,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = auth_headers(api_key, api_secret)
        self.timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, sock_connect=connect_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self.timeout, connector=http_connector()
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Answer:
        """Send one request; return the answer or raise as the module docstring says."""
        self.requests += 1
        return await send_json(self._client(), method, self.base_url, path, query=query, body=body)

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def rest_from_settings(settings: Settings) -> AlpacaRest:
    """Build the client from settings; raise ConfigError naming the missing credentials."""
    if not settings.alpaca_api_key or not settings.alpaca_api_secret:
        raise ConfigError(
            "the trader needs API credentials: set ALPACA_API_KEY and ALPACA_API_SECRET"
        )
    return AlpacaRest(
        settings.alpaca_rest_url,
        api_key=settings.alpaca_api_key.reveal(),
        api_secret=settings.alpaca_api_secret.reveal(),
    )
