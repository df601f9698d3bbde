"""Each venue client's default ``handle_websocket_error``, called with the errors it would see.

The promise (``venues.clients``, ``common.client_events``, README "Using tickpipe from code"): a
dropped connection backs off (capped, jittered); a rate limit, or a 418/429 handshake, waits at
least the venue's ``Retry-After``; a refused key (:class:`AuthError`) is raised, as is anything
that is not a connection's fault (a bug). Every error seen is counted.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from tickpipe.common.backoff import Backoff
from tickpipe.common.errors import AuthError, RateLimited, VenueError
from tickpipe.venues.alpaca.client import AlpacaClient
from tickpipe.venues.binance.client import BinanceClient
from tickpipe.venues.ibkr.client import IbkrClient

CAP_S = 0.5


def binance(backoff: Backoff) -> Any:
    return BinanceClient(
        "ws://127.0.0.1:9", "ws://127.0.0.1:9/ws-api/v3", "http://127.0.0.1:9", backoff=backoff
    )


def alpaca(backoff: Backoff) -> Any:
    url = "ws://127.0.0.1:9"
    return AlpacaClient(
        url, f"{url}/stream", "http://127.0.0.1:9", "key", "secret", backoff=backoff
    )


def ibkr(backoff: Backoff) -> Any:
    return IbkrClient("http://127.0.0.1:9/v1/api", "ws://127.0.0.1:9/v1/api/ws", backoff=backoff)


CLIENTS: dict[str, Callable[[Backoff], Any]] = {"binance": binance, "alpaca": alpaca, "ibkr": ibkr}
clients = pytest.mark.parametrize("make", list(CLIENTS.values()), ids=list(CLIENTS))


def handshake_refused(status: int, retry_after: str) -> InvalidStatus:
    headers = Headers({"Retry-After": retry_after})
    return InvalidStatus(Response(status, "Too Many Requests", headers, b""))


def transient_errors() -> list[BaseException]:
    closed = ConnectionClosedError(Close(1011, "internal error"), None)
    return [closed, OSError("connection reset"), TimeoutError(), VenueError("ended the session")]


@clients
def test_a_transient_drop_backs_off_within_the_cap(make: Callable[[Backoff], Any]) -> None:
    seed = random.randrange(1 << 30)
    print(f"backoff seed {seed}")
    client = make(Backoff(base_s=0.1, cap_s=CAP_S, rng=random.Random(seed)))
    errors = transient_errors()
    delays = [client.handle_websocket_error(error) for error in errors]
    assert all(0 <= d <= CAP_S for d in delays), delays
    assert client.errors == len(errors)


@clients
@pytest.mark.parametrize(
    "error",
    [
        RateLimited("slow down", retry_after_s=3.0),
        handshake_refused(429, "3"),
        handshake_refused(418, "3"),
    ],
    ids=["rate-limited", "429-handshake", "418-handshake"],
)
def test_a_rate_limit_waits_at_least_the_venues_retry_after(
    make: Callable[[Backoff], Any], error: BaseException
) -> None:
    client = make(Backoff(base_s=0.01, cap_s=CAP_S))
    assert client.handle_websocket_error(error) >= 3.0, "the wait is above the backoff cap"
    assert 0 <= client.handle_websocket_error(OSError("reset")) <= CAP_S, "once only"
    assert client.errors == 2


@clients
def test_a_refused_key_and_a_bug_are_raised(make: Callable[[Backoff], Any]) -> None:
    client = make(Backoff(base_s=0.01, cap_s=CAP_S))
    refused = AuthError("API key rejected")
    with pytest.raises(AuthError) as raised:
        client.handle_websocket_error(refused)
    assert raised.value is refused
    with pytest.raises(KeyError):
        client.handle_websocket_error(KeyError("a bug in a reader"))
    assert client.errors == 2
