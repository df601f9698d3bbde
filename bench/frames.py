"""Build the benchmark's trade frames: combined-stream ``<symbol>@trade`` text (pure)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import orjson

from tickpipe.common.schema import RawFrame

__all__ = [
    "PRICES",
    "raw_entries",
    "streams_symbols",
    "symbol_names",
    "trade_frames",
    "trade_key",
    "ws_text_frame",
]

#: Start prices of the benchmark symbols (the mock's start prices).
PRICES: dict[str, int] = {"BTCUSDT": 6_180_000, "ETHUSDT": 268_000}  # in 0.01 ticks


def trade_frames(
    symbols: Sequence[str],
    count: int,
    *,
    start_ms: int,
    first_id: int = 1,
    event: str = "trade",
) -> list[str]:
    """Return ``count`` combined trade frames, round-robin over ``symbols``, ids rising per symbol.

    The price steps one tick up and down around the symbol's start price (``PRICES``, else 100),
    so frames are realistic in size and every trade is valid. ``event="aggTrade"`` gives the
    same trades as ``<symbol>@aggTrade`` frames (aggregate id ``a``, one trade each: ``f`` =
    ``l``), the stream clients such as cryptofeed subscribe to for trades.
    """
    if event not in ("trade", "aggTrade"):
        raise ValueError(f"event must be trade or aggTrade, got {event!r}")
    out: list[str] = []
    for n in range(count):
        symbol, trade_id = trade_key(n, symbols, first_id=first_id)
        ticks = PRICES.get(symbol, 10_000) + (1 if trade_id % 2 else -1)
        ms = start_ms + n // 100
        ids: dict[str, int] = (
            {"t": trade_id} if event == "trade" else {"a": trade_id, "f": trade_id, "l": trade_id}
        )
        payload = {
            "e": event,
            "E": ms,
            "s": symbol,
            **ids,
            "p": f"{ticks // 100}.{ticks % 100:02d}000000",
            "q": "0.00100000",
            "T": ms,
            "m": bool(n % 3),
            "M": True,
        }
        stream = f"{symbol.lower()}@{event}"
        out.append(orjson.dumps({"stream": stream, "data": payload}).decode())
    return out


def symbol_names(count: int) -> tuple[str, ...]:
    """Return ``count`` distinct symbols: the mock's ``BTCUSDT`` and ``ETHUSDT`` first, then
    ``S0003USDT``, ``S0004USDT``... (valid Binance-shaped names, priced by ``trade_frames``)."""
    if count < 1:
        raise ValueError(f"need at least one symbol, got {count}")
    real = tuple(PRICES)[:count]
    return real + tuple(f"S{n:04d}USDT" for n in range(len(real) + 1, count + 1))


def trade_key(index: int, symbols: Sequence[str], *, first_id: int = 1) -> tuple[str, int]:
    """Return ``(symbol, trade id)`` of frame ``index`` (from 0) of :func:`trade_frames`."""
    return symbols[index % len(symbols)], first_id + index // len(symbols)


def streams_symbols(names: Sequence[str]) -> set[str]:
    """Return the symbols of stream names such as ``btcusdt@trade`` (upper case)."""
    return {name.partition("@")[0].upper() for name in names if "@" in name}


def ws_text_frame(text: str) -> bytes:
    """Encode one unmasked (server-to-client) WebSocket text frame, FIN set (RFC 6455 5.2)."""
    data = text.encode()
    size = len(data)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + data


def raw_entries(frames: Sequence[str], *, conn: str, ts_recv: int) -> list[dict[str, str]]:
    """Return the raw-stream fields the ingestor writes for ``frames`` received on ``conn``."""
    return [
        RawFrame("ws", "binance", conn, seq, ts_recv + seq, text, "market").to_fields()
        for seq, text in enumerate(frames, start=1)
    ]
