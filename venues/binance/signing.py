"""Sign Binance requests with the configured key type: HMAC-SHA256 or Ed25519 (pure, no I/O).

HMAC signatures are lower-case hex of the secret's HMAC-SHA256; Ed25519 signatures are base64 of
the private key's signature over the same payload (the only key type ``session.logon`` accepts).
The Ed25519 private key comes from ``BINANCE_API_SECRET`` as PEM (PKCS#8) or base64 (PKCS#8 DER
or the raw 32-byte seed). Ed25519 needs the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from common.errors import ConfigError
from venues.binance.wire import hmac_signature

__all__ = ["Signer", "hmac_signer", "load_signer"]

#: Turns a signing payload into its signature.
Signer = Callable[[str], str]


def hmac_signer(secret: str) -> Signer:
    """Return a signer that makes HMAC-SHA256 hex signatures with ``secret``."""
    return lambda payload: hmac_signature(secret, payload)


def _ed25519_key(text: str) -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            load_der_private_key,
            load_pem_private_key,
        )
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "TICKPIPE_BINANCE_KEY_TYPE=ed25519 needs the 'cryptography' package: "
            "pip install cryptography"
        ) from None
    text = text.strip().replace("\\n", "\n")
    try:
        if "BEGIN" in text:
            key = load_pem_private_key(text.encode(), password=None)
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) == 32:
                key = Ed25519PrivateKey.from_private_bytes(raw)
            else:
                key = load_der_private_key(raw, password=None)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(
            "BINANCE_API_SECRET is not an Ed25519 private key (give PEM or base64)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("BINANCE_API_SECRET holds a private key that is not Ed25519")
    return key


def load_signer(key_type: str, secret: str) -> Signer:
    """Return the signer for ``key_type`` (``hmac`` or ``ed25519``); bad keys raise ConfigError."""
    if key_type == "hmac":
        return hmac_signer(secret)
    if key_type != "ed25519":
        raise ConfigError(f"TICKPIPE_BINANCE_KEY_TYPE={key_type}: give hmac or ed25519")
    key = _ed25519_key(secret)

    def sign(payload: str) -> str:
        return base64.b64encode(key.sign(payload.encode())).decode()

    return sign
