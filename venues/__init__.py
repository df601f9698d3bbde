"""Hold one package per venue: everything specific to that venue, converted once at the edge.

``venues.binance`` and ``venues.alpaca`` each hold their venue's pure WebSocket session, the
parsers into :mod:`common.schema` events, REST calls, signing, the order adapter and the
embeddable client. Stages reach them only through :mod:`venues.registry`.
"""

__all__: list[str] = []
