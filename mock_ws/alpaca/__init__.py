"""Run an Alpaca-compatible venue: market-data streams, trading stream and REST on one port.

The pure cores are :mod:`~mock_ws.alpaca.codec` (JSON/msgpack frames),
:mod:`~mock_ws.alpaca.session` (market-data session), :mod:`~mock_ws.alpaca.trading_stream`,
:mod:`~mock_ws.alpaca.marketdata`, :mod:`~mock_ws.alpaca.orders`,
:mod:`~mock_ws.alpaca.broker` and :mod:`~mock_ws.alpaca.api`; :mod:`~mock_ws.alpaca.server`
is the aiohttp shell. Start it through ``mock_ws.start_mock(alpaca_port=0)``.
"""

from __future__ import annotations

from collections.abc import Callable

from tickpipe.mock_ws.alpaca.server import TEST_SYMBOL, AlpacaMock
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.market import MarketSim

__all__ = ["ALPACA_START_PRICES", "ALPACA_SYMBOLS", "TEST_SYMBOL", "AlpacaMock", "build_alpaca"]

#: Symbols the Alpaca venue simulates: the test stream's, one stock and one crypto pair.
ALPACA_SYMBOLS = (TEST_SYMBOL, "AAPL", "BTC/USD")
ALPACA_START_PRICES = {TEST_SYMBOL: "134", "AAPL": "190", "BTC/USD": "61800"}


def build_alpaca(
    *,
    seed: int,
    trades_per_s: float,
    api_key: str,
    api_secret: str,
    ground_truth: GroundTruthWriter,
    clock: Callable[[], int],
    auth_timeout_s: float = 10.0,
    hours: str = "venue",
) -> AlpacaMock:
    """Build (not start) the Alpaca venue with its own seeded market.

    ``hours`` "venue" trades stocks in NYSE's regular session only (:mod:`.calendar`);
    "always" trades them around the clock, for demos at any hour.
    """
    sim = MarketSim(ALPACA_SYMBOLS, seed, trades_per_s, start_prices=ALPACA_START_PRICES)
    return AlpacaMock(
        sim,
        api_key=api_key,
        api_secret=api_secret,
        ground_truth=ground_truth,
        clock=clock,
        seed=seed,
        auth_timeout_s=auth_timeout_s,
        hours=hours,
    )
