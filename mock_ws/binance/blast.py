"""Encode trade frames in bulk for blast mode: raw WebSocket frames, no per-frame objects.

Blast mode serves ``<symbol>@trade`` as fast as the client reads (or at ``rate`` frames/s):
each connection gets its own contiguous trade ids from 1, prices from a precomputed seeded walk,
and frames are built with one bytes-format per trade and written to the socket in chunks, so a
single core sends well over 100 000 frames per second. The ground truth records one ``blast``
summary per connection instead of every frame.
"""

from __future__ import annotations

import random
import struct

from mock_ws.binance.streams import StreamSession
from mock_ws.market import MarketSim

__all__ = ["BlastEncoder", "blast_encoders", "ws_frame_header"]

_PRICES = 4096


def ws_frame_header(length: int) -> bytes:
    """Return the header of an unmasked, final text frame (server to client) of ``length``."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return b"\x81\x7e" + struct.pack("!H", length)
    return b"\x81\x7f" + struct.pack("!Q", length)


class BlastEncoder:
    """Build chunks of encoded ``trade`` frames for one symbol and connection."""

    def __init__(self, symbol: str, seed: int, start_price: float, *, combined: bool) -> None:
        rng = random.Random(f"{seed}:{symbol}:blast")
        price = start_price
        prices = []
        qtys = []
        for _ in range(_PRICES):
            price = max(
                0.01, price + 0.02 * (start_price - price) + start_price * 1e-4 * rng.gauss(0, 1)
            )
            prices.append(f"{price:.2f}000000".encode())
            qtys.append(f"{rng.expovariate(1.0):.5f}000".encode())
        self._prices = prices
        self._qtys = qtys
        self.next_id = 1
        body = (
            b'{"e":"trade","E":%d,"s":"' + symbol.encode() + b'","t":%d,"p":"%s","q":"%s",'
            b'"T":%d,"m":%s,"M":true}'
        )
        if combined:
            body = b'{"stream":"' + symbol.lower().encode() + b'@trade","data":' + body + b"}"
        self._template = body

    def chunk(self, count: int, now_ms: int) -> bytes:
        """Return ``count`` consecutive frames, concatenated, for trades at ``now_ms``."""
        template = self._template
        prices, qtys = self._prices, self._qtys
        parts = []
        trade_id = self.next_id
        for i in range(trade_id, trade_id + count):
            k = i % _PRICES
            payload = template % (
                now_ms,
                i,
                prices[k],
                qtys[k],
                now_ms,
                b"true" if k & 1 else b"false",
            )
            parts.append(ws_frame_header(len(payload)))
            parts.append(payload)
        self.next_id = trade_id + count
        return b"".join(parts)


def blast_encoders(
    session: StreamSession, market: MarketSim, streams: frozenset[str]
) -> list[BlastEncoder]:
    """Return one encoder per blasted ``<symbol>@trade`` stream (``streams``) of a connection."""
    out = []
    for name in session.streams:
        if name in streams:
            symbol = name.partition("@")[0].upper()
            start = float(market.start_price(symbol))
            out.append(BlastEncoder(symbol, market.seed, start, combined=session.combined))
    return out
