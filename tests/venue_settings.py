"""Settings of a deployment with two venues, for the tests that need several venues."""

from __future__ import annotations

from tickpipe.common.settings import Settings, load_settings


def two_venues(namespace: str) -> Settings:
    """Binance (BTCUSDT) and Alpaca (FAKEPACA) in one deployment under ``namespace``."""
    env = {
        "TICKPIPE_NAMESPACE": namespace,
        "TICKPIPE_VENUES": "binance,alpaca",
        "TICKPIPE_SYMBOLS": "binance:BTCUSDT,alpaca:FAKEPACA",
    }
    return load_settings(env, dotenv_path=None)
