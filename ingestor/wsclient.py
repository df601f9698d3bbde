"""Open the ingestor's venue WebSocket connections with picows or websockets, one interface.

The ingestor uses a small part of a WebSocket client: :func:`connect` (URL, upgrade headers,
TLS context with the CA file of :mod:`common.tls`, pings every ``ping_interval`` answered
within ``ping_timeout``, close timeout, message size cap, receive queue, no compression) and, on
the connection (:class:`WsConnection`), ``recv``/``async for`` (``str`` for text frames,
``bytes`` for binary ones such as Alpaca's msgpack), ``send``, ``close(code, reason)`` and
``close_code``/``close_reason`` once closed. Failures raise the exceptions below, each a tuple of
both libraries' classes so one ``except`` catches whichever client runs:
:data:`ConnectionClosed` (with ``rcvd``/``sent`` close frames and ``rcvd_then_sent``),
:data:`InvalidStatus` (``response.status_code``, ``response.headers``), :data:`InvalidURI` and
:data:`WebSocketException` (the base of all of them).

Two implementations, chosen by ``TICKPIPE_WS_CLIENT`` (:attr:`WsOptions.client
<ingestor.slot.WsOptions>`; empty: :func:`default_client`):

* ``picows``: picows' websockets-compatible client (``picows.websockets``), whose frame parsing
  is compiled; ``python -m bench ws-client`` measured it at about a tenth of websockets' CPU per
  received frame (``docs/benchmarks.md``). The default when picows is installed (the ``fast``
  extra).
* ``websockets``: the websockets library, always installed.

The venue clients of ``venues/*/client.py`` stay on websockets.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast

import websockets.asyncio.client as ws_client
import websockets.exceptions as ws_errors

from tickpipe.common.errors import ConfigError

__all__ = [
    "WS_CLIENTS",
    "ConnectionClosed",
    "InvalidStatus",
    "InvalidURI",
    "WebSocketException",
    "WsConnection",
    "check_client",
    "connect",
    "default_client",
    "installed",
]

#: The implementations, the preferred first.
WS_CLIENTS = ("picows", "websockets")

try:
    import picows.websockets.asyncio.client as picows_client
    import picows.websockets.exceptions as picows_errors
except ImportError:  # the ``fast`` extra is not installed
    picows_client = None  # type: ignore[assignment]
    picows_errors = None  # type: ignore[assignment]


def _both(name: str) -> Any:
    """Return websockets' exception class ``name`` and picows' (when installed), as a tuple.

    Typed as websockets' class: picows' classes carry the same attributes.
    """
    classes: list[type[Exception]] = [getattr(ws_errors, name)]
    if picows_errors is not None:
        classes.append(getattr(picows_errors, name))
    return tuple(classes)


#: The connection closed, cleanly or not (``exc.rcvd``, ``exc.sent``, ``exc.rcvd_then_sent``).
ConnectionClosed: tuple[type[ws_errors.ConnectionClosed], ...] = _both("ConnectionClosed")
#: The venue refused the upgrade with an HTTP status (``exc.response.status_code``).
InvalidStatus: tuple[type[ws_errors.InvalidStatus], ...] = _both("InvalidStatus")
#: The URL is not a WebSocket URL.
InvalidURI: tuple[type[ws_errors.InvalidURI], ...] = _both("InvalidURI")
#: The base class of every error of either client.
WebSocketException: tuple[type[ws_errors.WebSocketException], ...] = _both("WebSocketException")


class WsConnection(Protocol):
    """What the ingestor uses of an open connection."""

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


def installed() -> tuple[str, ...]:
    """Return the implementations importable here, the preferred first."""
    return WS_CLIENTS if picows_client is not None else ("websockets",)


def default_client() -> str:
    """Return the implementation used when none is set: picows when installed."""
    return installed()[0]


def check_client(name: str) -> str:
    """Return ``name`` if it is an installed implementation; ConfigError saying why not."""
    if name not in WS_CLIENTS:
        raise ConfigError(f"TICKPIPE_WS_CLIENT={name}: must be one of {', '.join(WS_CLIENTS)}")
    if name not in installed():
        raise ConfigError(
            f"TICKPIPE_WS_CLIENT={name}: {name} is not installed (pip install {name}, "
            "or install tickpipe[fast])"
        )
    return name


def connect(
    client: str,
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    headers: Mapping[str, str] | None,
    ping_interval_s: float,
    ping_timeout_s: float,
    close_timeout_s: float,
    max_size: int,
    max_queue: int,
) -> AbstractAsyncContextManager[WsConnection]:
    """Open ``url`` with ``client`` (see :data:`WS_CLIENTS`); use as ``async with``."""
    module: Any = ws_client if check_client(client) == "websockets" else picows_client
    opened = module.connect(
        url,
        ssl=ssl_context,
        additional_headers=dict(headers) if headers else None,
        ping_interval=ping_interval_s,
        ping_timeout=ping_timeout_s,
        close_timeout=close_timeout_s,
        max_size=max_size,
        max_queue=max_queue,
        compression=None,
    )
    return cast(AbstractAsyncContextManager[WsConnection], opened)
