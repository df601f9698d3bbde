"""Binance's published signing test vectors (protocols.md section 2.1), for the signing tests."""

from __future__ import annotations

from typing import Any

__all__ = [
    "BINANCE_KEY",
    "BINANCE_SECRET",
    "WS_API_ORDER",
    "WS_API_RECV_WINDOW_MS",
    "WS_API_SIGNATURE",
    "WS_API_TIMESTAMP_MS",
]

BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"

# The WS-API example: these order parameters, sent at this time with this receive window and
# the key above, sign to this signature.
WS_API_ORDER: dict[str, Any] = {
    "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC",
    "quantity": "0.01000000", "price": "52000.00",
}  # fmt: skip
WS_API_TIMESTAMP_MS = 1645423376532
WS_API_RECV_WINDOW_MS = 100
WS_API_SIGNATURE = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
