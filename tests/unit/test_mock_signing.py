"""Unit tests: REST signing (Binance documentation vectors), Ed25519 keys and session.logon."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.doc_vectors import BINANCE_KEY, BINANCE_SECRET
from tickpipe.mock_ws.binance.auth import (
    check_rest_signed,
    check_signed,
    ed25519_signature,
    load_ed25519_key,
)
from tickpipe.mock_ws.binance.ws_api import ApiSession, WsApi
from tickpipe.mock_ws.market import MarketSim
from tickpipe.mock_ws.matching import MatchingEngine, OrderRejected
from tickpipe.venues.binance.wire import ws_api_payload

DOC_NS = 1_499_827_319_559 * 1_000_000
QUERY = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
BODY = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
PARAMS = {"recvWindow": "5000", "timestamp": "1499827319559"}
NOW = 1_700_000_000_000_000_000
PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ED_KEYS = {"ed-key": load_ed25519_key(PEM)}


def rest_check(query: str, body: str, signature: str, key: str = BINANCE_KEY) -> None:
    check_rest_signed(
        query,
        body,
        {**PARAMS, "signature": signature},
        key,
        api_key=BINANCE_KEY,
        api_secret=BINANCE_SECRET,
        now_ns=DOC_NS,
        ed25519_keys=ED_KEYS,
    )


def test_rest_documentation_examples_reproduce() -> None:
    full = f"{QUERY}&{BODY}"
    sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    rest_check(f"{full}&signature={sig}", "", sig)  # example 1: query string only
    rest_check("", f"{full}&signature={sig}", sig)  # example 2: body only
    mixed = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
    rest_check(QUERY, f"{BODY}&signature={mixed}", mixed)  # example 3: query + body
    rest_check(QUERY, f"{BODY}&signature={mixed}", mixed.upper())  # HMAC: case-insensitive
    with pytest.raises(OrderRejected) as info:
        rest_check(QUERY, f"{BODY}&signature={sig}", sig)
    assert info.value.code == -1022
    with pytest.raises(OrderRejected) as info:
        rest_check(QUERY, BODY, mixed, key="")
    assert (info.value.code, info.value.status) == (-2014, 401)


def test_ed25519_rest_and_ws_api_signatures() -> None:
    full = f"{QUERY}&{BODY}"
    sig = ed25519_signature(PRIVATE, full)
    assert base64.b64decode(sig) and len(base64.b64decode(sig)) == 64
    rest_check(full, "", sig, key="ed-key")
    with pytest.raises(OrderRejected) as info:  # base64 is case-sensitive
        rest_check(full, "", sig.swapcase(), key="ed-key")
    assert info.value.code == -1022
    params: dict[str, Any] = {"apiKey": "ed-key", "timestamp": NOW // 1_000_000}
    params["signature"] = ed25519_signature(PRIVATE, ws_api_payload(params))
    check_signed(params, api_key="k", api_secret="s", now_ns=NOW, ed25519_keys=ED_KEYS)
    with pytest.raises(OrderRejected):
        check_signed(params, api_key="k", api_secret="s", now_ns=NOW)  # key unknown
    raw = PRIVATE.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert (
        load_ed25519_key(raw).public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        == raw
    )


def call(api: WsApi, s: ApiSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
    text = orjson.dumps({"id": "r", "method": method, "params": params})
    return api.handle(s, text, NOW).response


def ed_signed(params: dict[str, Any]) -> dict[str, Any]:
    out = {"apiKey": "ed-key", "timestamp": NOW // 1_000_000, **params}
    out["signature"] = ed25519_signature(PRIVATE, ws_api_payload(out))
    return out


def test_session_logon_lets_requests_omit_key_and_signature() -> None:
    market = MarketSim(["BTCUSDT"], seed=1, trades_per_s=10)
    api = WsApi(MatchingEngine(market), api_key="k", api_secret="s", ed25519_keys=ED_KEYS)
    s = api.open(1, connected_ms=123)
    status = call(api, s, "session.status", {})["result"]
    assert status["apiKey"] is None and status["connectedSince"] == 123
    unsigned = {"timestamp": NOW // 1_000_000}
    assert call(api, s, "account.status", unsigned)["status"] == 400
    assert call(api, s, "userDataStream.subscribe", {})["error"]["code"] == -2015
    hmac_logon = call(api, s, "session.logon", {"apiKey": "k", "timestamp": 1, "signature": "x"})
    assert hmac_logon["error"]["code"] == -4056
    logon = call(api, s, "session.logon", ed_signed({}))
    assert logon["status"] == 200 and logon["result"]["apiKey"] == "ed-key"
    assert logon["result"]["authorizedSince"] == NOW // 1_000_000
    assert call(api, s, "account.status", unsigned)["status"] == 200
    sub = call(api, s, "userDataStream.subscribe", {})
    assert sub["result"] == {"subscriptionId": 0}
    assert call(api, s, "session.status", {})["result"]["userDataStream"] is True
    assert call(api, s, "session.logout", {})["result"]["apiKey"] is None
    assert call(api, s, "account.status", unsigned)["status"] == 400
