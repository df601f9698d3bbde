"""Speak Binance Spot: market streams, user data, the WebSocket API and REST.

Pure cores: ``wire`` (payload shapes, stream names, HMAC), ``session`` (connection plans,
replies), ``events`` (frames to events), ``orders`` (signed order requests, answers to errors),
``signing`` (HMAC or Ed25519 keys). I/O: ``ws_api`` (the trader's WebSocket API connection),
``client`` (the venue connection embeddable without Redis).
"""

__all__: list[str] = []
