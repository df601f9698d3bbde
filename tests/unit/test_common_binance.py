"""Binance wire helpers: signing test vectors from the venue's docs, parsing real frames."""

from __future__ import annotations

import json

import pytest

from tests.doc_vectors import BINANCE_SECRET
from tests.realdata import REALDATA, capture_frames
from tickpipe.common.errors import DecodeError
from tickpipe.common.units import client_order_id_for
from tickpipe.venues.binance.wire import (
    hmac_signature,
    parse_execution_report,
    parse_trade,
    unwrap,
    ws_api_payload,
)


def test_rest_signature_test_vector() -> None:
    payload = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
               "&recvWindow=5000&timestamp=1499827319559")  # fmt: skip
    assert hmac_signature(BINANCE_SECRET, payload) == (
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )


def test_ws_api_signature_test_vector_from_unsorted_params() -> None:
    params = {
        "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01000000", "price": "52000.00", "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        "signature": "ignored",
    }  # fmt: skip
    assert hmac_signature(BINANCE_SECRET, ws_api_payload(params)) == (
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    )


def test_client_order_id_is_deterministic_and_valid() -> None:
    cid = client_order_id_for("binance:0|1-0|threshold")
    assert cid == client_order_id_for("binance:0|1-0|threshold")
    assert cid != client_order_id_for("binance:0|1-1|threshold")
    assert len(cid) <= 36 and all(c.isalnum() or c in "-_" for c in cid)


def _real_trade_lines(limit: int) -> list[tuple[int, str]]:
    out = []
    for ts, frame in capture_frames():
        if '"@trade"' in frame or "@trade" in frame.split(",", 1)[0]:
            out.append((ts, frame))
        if len(out) >= limit:
            break
    return out


def test_parse_real_trade_frames() -> None:
    lines = _real_trade_lines(500)
    trades = []
    for ts, frame in lines:
        stream, data = unwrap(frame)
        assert stream == "btcusdt@trade"
        trades.append(parse_trade(data, ts_recv=ts))
    assert trades[0].trade_id == "3735683259" and trades[0].price == "61837.63000000"
    assert trades[0].side == "sell"  # m=true: buyer was maker
    ids = [int(t.trade_id) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert all(t.ts_event % 1_000_000 == 0 for t in trades)


@pytest.mark.parametrize(
    "data",
    [
        {"e": "trade", "s": "X", "t": 1, "p": "NaN", "q": "1", "T": 1, "m": True},
        {"e": "trade", "s": "X", "t": 1, "p": "-1", "q": "1", "T": 1, "m": True},
        {"e": "trade", "s": "X", "t": 1, "p": "0", "q": "1", "T": 1, "m": True},
        {"e": "trade", "s": "X", "t": 1, "p": 5.0, "q": "1", "T": 1, "m": True},
        {"e": "trade", "s": "X", "p": "1", "q": "1", "T": 1, "m": True},
        {"e": "aggTrade"},
        ["not", "a", "dict"],
    ],
)
def test_bad_trades_raise_decode_error(data: object) -> None:
    with pytest.raises(DecodeError):
        parse_trade(data, ts_recv=0)  # type: ignore[arg-type]


def test_unwrap_rejects_garbage() -> None:
    with pytest.raises(DecodeError):
        unwrap(b"\x00not json")


def test_parse_real_execution_report() -> None:
    doc = json.loads(
        (REALDATA / "nautilus_trader/ws_spot_execution_report_binance_us.json").read_text()
    )
    update = parse_execution_report(doc["data"], ts_recv=5)
    assert update.symbol == "BTCUSD" and update.side == "sell"
    assert update.status == "FILLED" and update.exec_type == "TRADE"
    assert update.last_qty == "0.00042000" and update.client_order_id == "T0ESHzso0banw0QiPFZYgj"
    assert update.ts_event == 1759347763167 * 1_000_000
