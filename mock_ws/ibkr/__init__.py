"""Run an IBKR Client Portal gateway: REST under ``/v1/api`` and the ``/v1/api/ws`` WebSocket.

The pure cores are :mod:`~mock_ws.ibkr.gateway` (session, pacing), :mod:`~mock_ws.ibkr.contracts`,
:mod:`~mock_ws.ibkr.marketdata` (L1 fields, ``smd`` subscriptions) and :mod:`~mock_ws.ibkr.broker`
(orders and their confirmation questions over the shared matching engine);
:mod:`~mock_ws.ibkr.server` is the aiohttp shell. Start it with ``mock_ws.start_mock(ibkr_port=0)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tickpipe.mock_ws.faults import FaultPlan
from tickpipe.mock_ws.ground_truth import GroundTruthWriter
from tickpipe.mock_ws.ibkr.server import IbkrMock
from tickpipe.mock_ws.market import MarketSim

__all__ = ["IBKR_START_PRICES", "IBKR_SYMBOLS", "IbkrMock", "build_ibkr"]

#: Symbols the gateway mock lists (US stocks) and their start prices.
IBKR_SYMBOLS = ("AAPL", "MSFT", "SPY")
IBKR_START_PRICES = {"AAPL": "190", "MSFT": "370", "SPY": "455"}


def build_ibkr(
    *,
    seed: int,
    trades_per_s: float,
    ground_truth: GroundTruthWriter,
    clock: Callable[[], int],
    faults: FaultPlan | None = None,
    **options: Any,
) -> IbkrMock:
    """Build (not start) the gateway with its own seeded market; ``options`` as for IbkrMock."""
    sim = MarketSim(IBKR_SYMBOLS, seed, trades_per_s, start_prices=IBKR_START_PRICES)
    return IbkrMock(
        sim, seed=seed, ground_truth=ground_truth, clock=clock, faults=faults, **options
    )
