"""Check signed WebSocket API and REST requests the way Binance does (pure, no I/O).

Order of checks: ``apiKey`` present and known (-2015, status 401), ``timestamp`` and
``recvWindow`` (-1021 / -1131), then the ``signature`` (-1022): HMAC-SHA256 hex (compared
case-insensitively) for the HMAC key, base64 Ed25519 for a key registered with a public key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tickpipe.common.units import MS
from tickpipe.mock_ws.matching import OrderRejected
from tickpipe.mock_ws.order_rules import mandatory
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

__all__ = [
    "DEFAULT_RECV_WINDOW_MS",
    "MAX_RECV_WINDOW_MS",
    "AccountKeys",
    "check_rest_signed",
    "check_signed",
    "check_time",
    "ed25519_signature",
    "load_ed25519_key",
]

DEFAULT_RECV_WINDOW_MS = Decimal(5000)
MAX_RECV_WINDOW_MS = Decimal(60000)


def load_ed25519_key(key: str | bytes) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM text or its 32 raw bytes."""
    data = key.encode() if isinstance(key, str) else key
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    loaded = serialization.load_pem_public_key(data)
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return loaded


def ed25519_signature(private_key: Ed25519PrivateKey, payload: str) -> str:
    """Sign ``payload`` as Binance expects from an Ed25519 key: base64 of the signature."""
    return base64.b64encode(private_key.sign(payload.encode())).decode()


def _verify(signature: Any, payload: str, api_secret: str, ed_key: Ed25519PublicKey | None) -> None:
    if not signature:
        raise mandatory("signature")
    bad = OrderRejected(-1022, "Signature for this request is not valid.")
    if not isinstance(signature, str):
        raise bad
    if ed_key is not None:
        try:
            ed_key.verify(base64.b64decode(signature, validate=True), payload.encode())
        except (InvalidSignature, binascii.Error, ValueError):
            raise bad from None
        return
    expected = hmac_signature(api_secret, payload)
    if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
        raise bad


def _key(
    key: Any, api_key: str, ed25519_keys: Mapping[str, Ed25519PublicKey] | None
) -> Ed25519PublicKey | None:
    """Return the Ed25519 key of ``key`` (None for the HMAC key); -2015 for an unknown key."""
    if isinstance(key, str) and key in (ed25519_keys or {}):
        return (ed25519_keys or {})[key]
    if not isinstance(key, str) or not hmac.compare_digest(key.encode(), api_key.encode()):
        raise OrderRejected(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    return None


def check_signed(
    params: Mapping[str, Any],
    *,
    api_key: str,
    api_secret: str,
    now_ns: int,
    ed25519_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> None:
    """Raise :class:`OrderRejected` unless ``params`` are a valid signed request for the key."""
    key = params.get("apiKey")
    if not key:
        raise mandatory("apiKey")
    ed_key = _key(key, api_key, ed25519_keys)
    check_time(params, now_ns)
    _verify(params.get("signature"), ws_api_payload(params), api_secret, ed_key)


def check_rest_signed(
    query: str,
    body: str,
    params: Mapping[str, Any],
    header_key: str | None,
    *,
    api_key: str,
    api_secret: str,
    now_ns: int,
    ed25519_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> None:
    """Check a signed REST request: ``X-MBX-APIKEY``, time window, HMAC over query + body.

    ``query`` and ``body`` are the raw (percent-encoded) query string and form body as sent;
    the signed payload is their concatenation without the ``signature`` parameter.
    """
    if not header_key:
        raise OrderRejected(-2014, "API-key format invalid.", 401)
    ed_key = _key(header_key, api_key, ed25519_keys)
    check_time(params, now_ns)

    def strip(raw: str) -> str:
        return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))

    _verify(params.get("signature"), strip(query) + strip(body), api_secret, ed_key)


@dataclass(frozen=True)
class AccountKeys:
    """One account's keys, shared by its REST and WebSocket API doors.

    The HMAC key and secret, and more API keys registered with an Ed25519 public key.
    """

    api_key: str
    api_secret: str = field(repr=False)
    ed25519_keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    def known(self, key: str | None) -> bool:
        """Tell whether ``key`` is one of the account's API keys."""
        return bool(key) and (key == self.api_key or key in self.ed25519_keys)

    def check(self, params: Mapping[str, Any], now_ns: int) -> None:
        """Check a signed WebSocket API request (:func:`check_signed`)."""
        check_signed(
            params,
            api_key=self.api_key,
            api_secret=self.api_secret,
            now_ns=now_ns,
            ed25519_keys=self.ed25519_keys,
        )

    def check_rest(
        self, query: str, body: str, params: Mapping[str, Any], header_key: str | None, now_ns: int
    ) -> None:
        """Check a signed REST request (:func:`check_rest_signed`)."""
        check_rest_signed(
            query,
            body,
            params,
            header_key,
            api_key=self.api_key,
            api_secret=self.api_secret,
            now_ns=now_ns,
            ed25519_keys=self.ed25519_keys,
        )


def check_time(params: Mapping[str, Any], now_ns: int) -> None:
    """Raise -1021 / -1131 unless ``timestamp`` is inside ``recvWindow`` of the server time."""
    raw_ts = params.get("timestamp")
    if raw_ts is None or raw_ts == "":
        raise mandatory("timestamp")
    try:
        timestamp = Decimal(str(raw_ts))
    except InvalidOperation:
        raise mandatory("timestamp") from None
    if timestamp > 10**14:  # microseconds
        timestamp /= 1000
    window = DEFAULT_RECV_WINDOW_MS
    if params.get("recvWindow") not in (None, ""):
        try:
            window = Decimal(str(params["recvWindow"]))
        except InvalidOperation:
            raise mandatory("recvWindow") from None
        if window > MAX_RECV_WINDOW_MS or window <= 0:
            raise OrderRejected(-1131, "recvWindow must be less than 60000")
    now_ms = Decimal(now_ns) / MS
    if timestamp >= now_ms + 1000:
        raise OrderRejected(
            -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if now_ms - timestamp > window:
        raise OrderRejected(-1021, "Timestamp for this request is outside of the recvWindow.")
