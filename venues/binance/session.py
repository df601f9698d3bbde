"""Plan the ingestor's Binance connections and read their replies (pure: no I/O, no clock).

Everything the shell needs to know about the venue's session protocol lives here: which streams a
partition subscribes, the combined-stream URL or the ``SUBSCRIBE`` messages, the signed
``userDataStream.subscribe.signature`` request, how a reply is classified (success, error, bad key,
rate limit) (frames are numbered into raw entries by :class:`common.links.ConnectionTape`).
Time always comes in as an integer argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from tickpipe.common.errors import AuthError, ConfigError, RateLimited, VenueError
from tickpipe.common.links import Link, Reply, decoded_object
from tickpipe.common.settings import Settings
from tickpipe.venues.binance.wire import (
    AUTH_ERROR_CODES,
    RATE_LIMIT_CODES,
    hmac_signature,
    retry_after_s,
    stream_name,
    ws_api_payload,
)

__all__ = [
    "AUTH_ERROR_CODES",
    "AUTH_HINT",
    "MAX_URL_CHARS",
    "SUBSCRIBE_CHUNK",
    "MarketPlan",
    "classify_reply",
    "is_data_frame",
    "market_plan",
    "market_streams",
    "plan_links",
    "server_time_of",
    "subscribe_message",
    "time_request",
    "user_data_subscribe_request",
]

#: Longest combined-stream URL we build; longer stream lists are subscribed by message instead.
MAX_URL_CHARS = 2000
#: Streams per ``SUBSCRIBE`` message when the list does not fit in the URL.
SUBSCRIBE_CHUNK = 200
AUTH_HINT = "check BINANCE_API_KEY and BINANCE_API_SECRET (a key pair valid for this venue)"

# Binance always puts these keys first in a data frame, so a prefix test tells data from a reply
# without decoding every frame on the hot path. Anything else is decoded: a proxy may add
# whitespace or reorder keys.
_DATA_PREFIXES = ('{"stream":', '{"subscriptionId":')
_DATA_PREFIXES_B = tuple(p.encode() for p in _DATA_PREFIXES)


def market_streams(symbols: Iterable[str], channel: str = "trade") -> list[str]:
    """Return the stream names a partition subscribes, in the symbols' order, without repeats."""
    return list(dict.fromkeys(stream_name(s, channel) for s in symbols))


def subscribe_message(streams: Sequence[str], request_id: int) -> str:
    """Build a live ``SUBSCRIBE`` control message."""
    return orjson.dumps({"method": "SUBSCRIBE", "params": list(streams), "id": request_id}).decode()


@dataclass(frozen=True, slots=True)
class MarketPlan:
    """How to open one market-data connection: the URL, then the messages to send in order."""

    url: str
    streams: tuple[str, ...]
    messages: tuple[str, ...] = ()


def market_plan(ws_url: str, symbols: Iterable[str], *, first_request_id: int = 1) -> MarketPlan:
    """Put the streams in the combined-stream URL, or subscribe by message if the URL gets long.

    Binance accepts up to 1024 streams per connection; a URL with hundreds of stream names is
    fragile, so past :data:`MAX_URL_CHARS` the connection opens ``/stream`` bare and subscribes in
    chunks of :data:`SUBSCRIBE_CHUNK` (the shell spaces them under the 5 messages/s limit).
    """
    streams = tuple(market_streams(symbols))
    base = ws_url.rstrip("/")
    url = f"{base}/stream?streams={'/'.join(quote(s, safe='@!:') for s in streams)}"
    if len(url) <= MAX_URL_CHARS:
        return MarketPlan(url, streams)
    chunks = [streams[i : i + SUBSCRIBE_CHUNK] for i in range(0, len(streams), SUBSCRIBE_CHUNK)]
    messages = tuple(
        subscribe_message(chunk, first_request_id + n) for n, chunk in enumerate(chunks)
    )
    return MarketPlan(f"{base}/stream", streams, messages)


def plan_links(settings: Settings) -> list[Link]:
    """Return one market link per partition, plus the private link when a key is configured."""
    keys, venue = settings.keys, settings.venue
    links = []
    for partition, symbols in settings.partitions().items():
        plan = market_plan(settings.binance_ws_url, symbols)
        links.append(Link(str(partition), plan.url, keys.raw(partition), "market", plan.messages))
    if settings.binance_api_key:
        if not settings.binance_api_secret:
            raise ConfigError("BINANCE_API_KEY is set but BINANCE_API_SECRET is empty; set both")
        links.append(
            Link(
                f"{venue}:private",
                settings.binance_ws_api_url,
                keys.private_raw(venue),
                "private",
                private=True,
            )
        )
    return links


def user_data_subscribe_request(
    api_key: str, api_secret: str, *, timestamp_ms: int, request_id: int
) -> str:
    """Build the signed WS-API ``userDataStream.subscribe.signature`` request (HMAC key)."""
    params: dict[str, Any] = {"apiKey": api_key, "timestamp": timestamp_ms}
    params["signature"] = hmac_signature(api_secret, ws_api_payload(params))
    request = {"id": request_id, "method": "userDataStream.subscribe.signature", "params": params}
    return orjson.dumps(request).decode()


def time_request(request_id: str) -> str:
    """Build the WS-API ``time`` request (the venue's clock, for the clock offset)."""
    return orjson.dumps({"id": request_id, "method": "time"}).decode()


def server_time_of(frame: str | bytes, request_id: str) -> int | None:
    """Return ``serverTime`` (ms) if ``frame`` answers the ``time`` request ``request_id``."""
    obj = decoded_object(frame)
    if obj is None or obj.get("id") != request_id:
        return None
    result = obj.get("result")
    server_ms = result.get("serverTime") if isinstance(result, dict) else None
    return server_ms if isinstance(server_ms, int) and not isinstance(server_ms, bool) else None


def is_data_frame(frame: str | bytes) -> bool:
    """Tell a combined-stream or user-data event frame from everything else.

    The venue's exact forms are told by their first key without decoding; any other frame is
    decoded (``{"stream", "data"}`` or ``{"subscriptionId", "event"}``, in any order and layout).
    """
    if isinstance(frame, bytes) and frame.startswith(_DATA_PREFIXES_B):
        return True
    if isinstance(frame, str) and frame.startswith(_DATA_PREFIXES):
        return True
    obj = decoded_object(frame)
    if obj is None:
        return False
    return ("stream" in obj and "data" in obj) or ("subscriptionId" in obj and "event" in obj)


def classify_reply(frame: str | bytes, *, now_ms: int) -> Reply | None:
    """Decode a frame and return it as a :class:`Reply`, or ``None`` when it is not a reply.

    Recognised shapes: stream control ``{"result":..,"id":..}`` and ``{"error":{"code","msg"},
    "id":..}``; WS-API ``{"id","status","result"|"error"}``. A bad key (status 401, codes -2015,
    -1022, -2014) becomes :class:`AuthError` whose message names the settings to fix; status
    429/418 (or code -1003) becomes :class:`RateLimited` waiting until ``error.data.retryAfter``
    (epoch ms). Frames that are not JSON objects are not replies: they are written as received and
    judged downstream.
    """
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "id" not in obj:
        return None
    if not ("result" in obj or "error" in obj or "status" in obj):
        return None
    status = obj.get("status")
    status = status if isinstance(status, int) else None
    error = obj.get("error")
    if error is None and (status is None or status < 400):
        return Reply(obj["id"], status, obj.get("result"))
    return Reply(obj["id"], status, None, _venue_error(error, status, now_ms))


def _venue_error(error: Any, status: int | None, now_ms: int) -> VenueError:
    err: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
    code = err.get("code")
    code = code if isinstance(code, int) else None
    text = str(err.get("msg", "")) or "no message"
    described = f"code {code}: {text}" if code is not None else text
    if status is not None:
        described = f"status {status}, {described}"
    if status == 401 or code in AUTH_ERROR_CODES:
        return AuthError(
            f"Binance rejected the API key or signature ({described}); {AUTH_HINT}",
            code=code,
            status=status,
        )
    if status in (429, 418) or code in RATE_LIMIT_CODES:
        wait_s = retry_after_s(err, now_ms, unknown_s=0.0)
        return RateLimited(
            f"Binance rate limit ({described})", retry_after_s=wait_s, code=code, status=status
        )
    return VenueError(f"Binance refused the request ({described})", code=code, status=status)
