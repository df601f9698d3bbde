"""The trader loads the venue's instrument filters over TLS, trusting TICKPIPE_CA_FILE.

`tickpipe up` serves the mock over https:// with its own CA: filters fetched with aiohttp's
default context failed the certificate check, so no order was rounded to the tick and the venue
refused every LIMIT price with more decimals (-1013 PRICE_FILTER).
"""

from __future__ import annotations

import asyncio
import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tickpipe.common import tls as client_tls
from tickpipe.common.settings import load_settings
from tickpipe.mock_ws import start_mock
from tickpipe.mock_ws.tls import generate
from tickpipe.venues.binance.order_adapter import BinanceOrders


def test_filters_load_from_a_venue_with_a_private_ca(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        tls = generate(tmp_path / "tls", ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
        mock = await start_mock(tls=tls)
        try:
            assert mock.rest_url.startswith("https://")
            client_tls.trust_ca_file(mock.ca_file)
            settings = load_settings({"TICKPIPE_BINANCE_REST_URL": mock.rest_url}, dotenv_path=None)
            orders = BinanceOrders(settings, venue=None, clock=lambda: 0, recv_window_ms=5000)  # type: ignore[arg-type]
            return dict(await orders.instruments(["BTCUSDT", "ETHUSDT"]))
        finally:
            client_tls.trust_ca_file(None)
            await mock.close()

    filters = asyncio.run(scenario())
    assert set(filters) == {"BTCUSDT", "ETHUSDT"}
    assert Decimal(filters["ETHUSDT"].tick_size) == Decimal("0.01")
