"""Send one HTTP request and read its whole JSON answer: the venues' shared ``aiohttp`` step.

A request that could not even connect raises :class:`VenueUnavailable` (it certainly did not
reach the venue); one that was written but got no full answer (timeout, dropped connection)
raises :class:`AmbiguousOutcome`. The answer comes back whole as :class:`Answer` (body decoded
from JSON, ``None`` when empty or not JSON) for the venue's own classifier to read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from tickpipe.common.errors import AmbiguousOutcome, VenueUnavailable

__all__ = ["Answer", "send_json"]

log = logging.getLogger("tickpipe.http")


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, decoded JSON body (``None`` if empty or not JSON), headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


async def send_json(
    client: aiohttp.ClientSession,
    method: str,
    base_url: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: Any = None,
) -> Answer:
    """Send ``method base_url+path`` with a JSON ``body``; return the answer (module doc)."""
    data = orjson.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else None
    try:
        async with client.request(
            method, base_url + path, params=query, data=data, headers=headers
        ) as response:
            raw = await response.read()
            answer_headers = dict(response.headers)
            status = response.status
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise VenueUnavailable(f"cannot connect to {base_url}: {exc}") from exc
    except TimeoutError as exc:
        raise AmbiguousOutcome(f"{method} {path}: no answer in time") from exc
    except aiohttp.ClientError as exc:
        raise AmbiguousOutcome(f"{method} {path}: connection failed: {exc}") from exc
    try:
        decoded = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        log.warning("venue answer is not JSON", extra={"status": status, "size": len(raw)})
        decoded = None
    return Answer(status, decoded, answer_headers)
