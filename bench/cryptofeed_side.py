"""Run cryptofeed's Binance trade feed into Redis Streams: the peer of ``python -m bench peer``.

``python -m bench.cryptofeed_side --url wss://127.0.0.1:PORT --redis-url redis://HOST:PORT
--key KEY --symbols BTCUSDT,ETHUSDT`` runs cryptofeed unchanged (its ``Binance`` feed, channel
``TRADES``, its ``TradeStream`` Redis backend, its own event loop set-up) against the benchmark's
blast server instead of Binance: the feed's address is the only thing replaced, and the symbol
list is given up front instead of read from Binance's REST ``exchangeInfo``. Each trade becomes
one entry of the stream ``KEY-BINANCE-<BASE>-<QUOTE>``. The server's certificate is trusted
through ``SSL_CERT_FILE``, as the tickpipe side's is. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from urllib.parse import urlsplit

__all__ = ["main"]

QUOTES = ("USDT", "BUSD", "USDC", "BTC")


def std_symbol(symbol: str) -> tuple[str, str]:
    """Split a Binance symbol such as ``BTCUSDT`` into (base, quote)."""
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"cannot split {symbol!r} into base and quote")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the feed until stopped; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.cryptofeed_side", description=__doc__)
    parser.add_argument("--url", required=True, help="wss:// address of the feed")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--key", required=True, help="prefix of the trade streams")
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--log", default="feedhandler.log")
    args = parser.parse_args(argv)
    try:
        from cryptofeed import FeedHandler
        from cryptofeed.backends.redis import TradeStream
        from cryptofeed.connection import WebsocketEndpoint
        from cryptofeed.defines import BINANCE, TRADES
        from cryptofeed.exchanges import Binance
        from cryptofeed.symbols import Symbols
    except ImportError:
        print("cryptofeed is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    normalized = {"-".join(std_symbol(s)): s for s in symbols}
    Symbols.set(BINANCE, normalized, {"instrument_type": dict.fromkeys(normalized, "spot")})

    class LoopbackBinance(Binance):  # type: ignore[misc]
        websocket_endpoints = [WebsocketEndpoint(args.url)]

    redis = urlsplit(args.redis_url)
    handler = FeedHandler(config={"uvloop": True, "log": {"filename": args.log, "level": "ERROR"}})
    handler.add_feed(
        LoopbackBinance(
            symbols=list(normalized),
            channels=[TRADES],
            callbacks={
                TRADES: TradeStream(
                    host=redis.hostname or "127.0.0.1", port=redis.port or 6379, key=args.key
                )
            },
        )
    )
    # FeedHandler.run() asks for the current loop, which uvloop's policy no longer creates on
    # demand: create it first (cryptofeed's uvloop policy is already installed by FeedHandler).
    asyncio.set_event_loop(asyncio.new_event_loop())
    handler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
