"""Unit tests of request signing: HMAC, Ed25519 keys in every accepted form, logged-on sessions."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common.errors import ConfigError
from venues.binance.orders import logon_params, sign_params
from venues.binance.signing import load_signer
from venues.binance.wire import hmac_signature, ws_api_payload

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()


def _forms() -> list[str]:
    raw = KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = KEY.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return [base64.b64encode(raw).decode(), base64.b64encode(der).decode(), pem,
            pem.replace("\n", "\\n")]  # fmt: skip


@pytest.mark.parametrize("secret", _forms())
def test_ed25519_keys_load_from_pem_or_base64_and_sign_verifiably(secret: str) -> None:
    sign = load_signer("ed25519", secret)
    payload = "apiKey=k&timestamp=1649729878532"
    PUBLIC.verify(base64.b64decode(sign(payload)), payload.encode())  # raises if wrong


@pytest.mark.parametrize("secret", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_ed25519_key_is_a_config_error_that_hides_the_value(secret: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_signer("ed25519", secret)
    assert "BINANCE_API_SECRET" in str(caught.value)
    assert not secret or secret not in str(caught.value)


def test_hmac_signer_matches_the_shared_signature() -> None:
    assert load_signer("hmac", "s")("a=1") == hmac_signature("s", "a=1")
    with pytest.raises(ConfigError):
        load_signer("rsa", "x")


def test_logon_params_are_signed_and_a_logged_on_request_carries_no_signature() -> None:
    sign = load_signer("ed25519", _forms()[0])
    logon = logon_params(api_key="k", timestamp_ms=5, signer=sign)
    assert set(logon) == {"apiKey", "timestamp", "signature"}
    PUBLIC.verify(base64.b64decode(logon["signature"]), ws_api_payload(logon).encode())
    plain = sign_params({"symbol": "X"}, api_key="k", api_secret="", timestamp_ms=7, session=True)
    assert plain == {"symbol": "X", "timestamp": 7, "recvWindow": 5000}
    signed = sign_params({"symbol": "X"}, api_key="k", api_secret="", timestamp_ms=7, signer=sign)
    PUBLIC.verify(base64.b64decode(signed["signature"]), ws_api_payload(signed).encode())
