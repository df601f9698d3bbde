"""Run a local Binance-Spot-compatible exchange on loopback: seeded market, matching, user data.

Start it in-process with :func:`start_mock` (tests use port 0) or as a process with
``python -m mock_ws --binance-port 9443``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from mock_ws.binance import BinanceMock
from mock_ws.ground_truth import GroundTruth, GroundTruthWriter, read_ground_truth
from mock_ws.market import MarketSim
from mock_ws.matching import MatchingEngine

__all__ = ["GroundTruth", "MockExchange", "read_ground_truth", "start_mock"]


class MockExchange:
    """A running mock exchange: its URLs, market, matching engine, and ``close()``."""

    def __init__(self, server: BinanceMock, host: str, port: int, ground_truth_path: str | None):
        self._server = server
        self.host = host
        self.binance_port = port
        self.ground_truth_path = ground_truth_path
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.ws_url = f"ws://{netloc}"
        self.ws_api_url = f"{self.ws_url}/ws-api/v3"
        self.rest_url = f"http://{netloc}"

    @property
    def market(self) -> MarketSim:
        return self._server.market

    @property
    def engine(self) -> MatchingEngine:
        return self._server.engine

    def status(self) -> dict[str, Any]:
        """Return what ``GET /_mock/status`` returns."""
        return self._server.status()

    async def close(self) -> None:
        """Close every connection and stop listening."""
        await self._server.close()

    async def __aenter__(self) -> MockExchange:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_mock(
    *,
    binance_port: int = 0,
    host: str = "127.0.0.1",
    seed: int = 1,
    symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT"),
    trades_per_s: float = 20.0,
    api_key: str = "mock-key",
    api_secret: str = "mock-secret",
    ground_truth_path: str | None = None,
    ping_interval_s: float = 20.0,
    clock: Callable[[], int] | None = None,
) -> MockExchange:
    """Start the mock on ``host:binance_port`` (0 = a free port) and return it running.

    ``trades_per_s`` is the mean trade rate of each symbol; ``clock`` returns integer
    nanoseconds (default ``time.time_ns``).
    """
    market = MarketSim([s.upper() for s in symbols], seed, trades_per_s)
    server = BinanceMock(
        market,
        api_key=api_key,
        api_secret=api_secret,
        ground_truth=GroundTruthWriter(ground_truth_path),
        ping_interval_s=ping_interval_s,
        clock=clock or time.time_ns,
    )
    try:
        port = await server.start(host, binance_port)
    except BaseException:
        server.ground_truth.close()
        raise
    return MockExchange(server, host, port, ground_truth_path)
