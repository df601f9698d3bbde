"""Check a signed WebSocket API request the way Binance does (pure, no I/O).

Order of checks: ``apiKey`` present and known (-2015, status 401), ``timestamp`` and
``recvWindow`` (-1021 / -1131), then the HMAC-SHA256 ``signature`` over the sorted payload
(-1022). HMAC signatures compare case-insensitively.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from common.binance import hmac_signature, ws_api_payload
from mock_ws.matching import OrderRejected

__all__ = ["DEFAULT_RECV_WINDOW_MS", "MAX_RECV_WINDOW_MS", "check_signed"]

DEFAULT_RECV_WINDOW_MS = Decimal(5000)
MAX_RECV_WINDOW_MS = Decimal(60000)
NS_PER_MS = 1_000_000


def _missing(name: str) -> OrderRejected:
    return OrderRejected(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def check_signed(params: Mapping[str, Any], *, api_key: str, api_secret: str, now_ns: int) -> None:
    """Raise :class:`OrderRejected` unless ``params`` are a valid signed request for the key."""
    key = params.get("apiKey")
    if not key:
        raise _missing("apiKey")
    if not isinstance(key, str) or not hmac.compare_digest(key.encode(), api_key.encode()):
        raise OrderRejected(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    raw_ts = params.get("timestamp")
    if raw_ts is None or raw_ts == "":
        raise _missing("timestamp")
    try:
        timestamp = Decimal(str(raw_ts))
    except InvalidOperation:
        raise _missing("timestamp") from None
    if timestamp > 10**14:  # microseconds
        timestamp /= 1000
    window = DEFAULT_RECV_WINDOW_MS
    if params.get("recvWindow") not in (None, ""):
        try:
            window = Decimal(str(params["recvWindow"]))
        except InvalidOperation:
            raise _missing("recvWindow") from None
        if window > MAX_RECV_WINDOW_MS or window <= 0:
            raise OrderRejected(-1131, "recvWindow must be less than 60000")
    now_ms = Decimal(now_ns) / NS_PER_MS
    if timestamp >= now_ms + 1000:
        raise OrderRejected(
            -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if now_ms - timestamp > window:
        raise OrderRejected(-1021, "Timestamp for this request is outside of the recvWindow.")
    signature = params.get("signature")
    if not signature:
        raise _missing("signature")
    expected = hmac_signature(api_secret, ws_api_payload(params))
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.lower().encode(), expected.encode()
    ):
        raise OrderRejected(-1022, "Signature for this request is not valid.")
