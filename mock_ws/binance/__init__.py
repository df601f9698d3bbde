"""Run a Binance-Spot-compatible venue: market streams, the WebSocket API and REST on one port.

The pure cores are :mod:`~mock_ws.binance.streams` (a market-stream connection's
subscriptions), :mod:`~mock_ws.binance.ws_api` (WebSocket API requests),
:mod:`~mock_ws.binance.auth` (signature and time checks), :mod:`~mock_ws.binance.feed` and
:mod:`~mock_ws.binance.candles` (market streams and REST bodies from simulated trades),
:mod:`~mock_ws.binance.rest` and :mod:`~mock_ws.binance.replay` (recorded sessions); the
shells are :mod:`~mock_ws.binance.server` (aiohttp), :mod:`~mock_ws.binance.connection`,
:mod:`~mock_ws.binance.control` (faults), :mod:`~mock_ws.binance.rest_market`,
:mod:`~mock_ws.binance.rest_trade` and :mod:`~mock_ws.binance.replay_shell`. The market,
matching engine and fault plan they share stay at :mod:`mock_ws`. Start it through
``mock_ws.start_mock()``.
"""

from __future__ import annotations

from mock_ws.binance.server import BinanceMock

__all__ = ["BinanceMock"]
