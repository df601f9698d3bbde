"""Unit tests of the mock exchange's signed-request checks (Binance's documented test vector)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import doc_vectors as doc
from tickpipe.mock_ws.binance.auth import check_signed
from tickpipe.mock_ws.matching import OrderRejected
from tickpipe.venues.binance.wire import hmac_signature, ws_api_payload

# Binance's WS-API signing example (protocols.md section 2.1).
DOC_PARAMS: dict[str, Any] = {
    **doc.WS_API_ORDER,
    "recvWindow": doc.WS_API_RECV_WINDOW_MS,
    "timestamp": doc.WS_API_TIMESTAMP_MS,
    "apiKey": doc.BINANCE_KEY,
    "signature": doc.WS_API_SIGNATURE,
}
DOC_NOW_NS = (1645423376532 + 50) * 1_000_000


def check(params: dict[str, Any], now_ns: int = DOC_NOW_NS, key: str = doc.BINANCE_KEY) -> None:
    check_signed(params, api_key=key, api_secret=doc.BINANCE_SECRET, now_ns=now_ns)


def error(
    params: dict[str, Any], now_ns: int = DOC_NOW_NS, key: str = doc.BINANCE_KEY
) -> tuple[int, int]:
    with pytest.raises(OrderRejected) as info:
        check(params, now_ns, key)
    return info.value.code, info.value.status


def test_doc_vector_payload_and_signature() -> None:
    payload = ws_api_payload(DOC_PARAMS)
    assert payload == (
        f"apiKey={doc.BINANCE_KEY}&price=52000.00&quantity=0.01000000&recvWindow=100&side=SELL"
        "&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532&type=LIMIT"
    )
    assert hmac_signature(doc.BINANCE_SECRET, payload) == DOC_PARAMS["signature"]


def test_doc_vector_is_accepted_inside_its_recv_window() -> None:
    check(DOC_PARAMS)
    check({**DOC_PARAMS, "signature": DOC_PARAMS["signature"].upper()})  # HMAC: case-insensitive


def test_changed_parameter_breaks_the_signature() -> None:
    assert error({**DOC_PARAMS, "quantity": "0.02000000"}) == (-1022, 400)
    assert error({**DOC_PARAMS, "signature": "0" * 64}) == (-1022, 400)
    assert error({k: v for k, v in DOC_PARAMS.items() if k != "signature"}) == (-1102, 400)


def test_wrong_or_missing_key() -> None:
    assert error(DOC_PARAMS, key="another-key") == (-2015, 401)
    assert error({k: v for k, v in DOC_PARAMS.items() if k != "apiKey"}) == (-1102, 400)


def test_timestamp_window() -> None:
    assert error(DOC_PARAMS, now_ns=(1645423376532 + 101) * 1_000_000) == (-1021, 400)
    assert error(DOC_PARAMS, now_ns=(1645423376532 - 1000) * 1_000_000) == (-1021, 400)
    check(DOC_PARAMS, now_ns=(1645423376532 - 999) * 1_000_000)  # < 1000 ms ahead is fine
    assert error({k: v for k, v in DOC_PARAMS.items() if k != "timestamp"}) == (-1102, 400)


def test_recv_window_default_and_maximum() -> None:
    params: dict[str, Any] = {"apiKey": "k", "timestamp": 1_000_000}
    params["signature"] = hmac_signature(doc.BINANCE_SECRET, ws_api_payload(params))
    check_signed(
        params, api_key="k", api_secret=doc.BINANCE_SECRET, now_ns=(1_000_000 + 5000) * 10**6
    )
    with pytest.raises(OrderRejected) as info:
        check_signed(
            params, api_key="k", api_secret=doc.BINANCE_SECRET, now_ns=(1_000_000 + 5001) * 10**6
        )
    assert info.value.code == -1021
    params = {"apiKey": "k", "timestamp": 1_000_000, "recvWindow": 60001}
    params["signature"] = hmac_signature(doc.BINANCE_SECRET, ws_api_payload(params))
    with pytest.raises(OrderRejected) as info:
        check_signed(params, api_key="k", api_secret=doc.BINANCE_SECRET, now_ns=1_000_000 * 10**6)
    assert info.value.code == -1131


def test_microsecond_timestamps() -> None:
    params: dict[str, Any] = {"apiKey": "k", "timestamp": 1645423376532000}
    params["signature"] = hmac_signature(doc.BINANCE_SECRET, ws_api_payload(params))
    check_signed(params, api_key="k", api_secret=doc.BINANCE_SECRET, now_ns=DOC_NOW_NS)
