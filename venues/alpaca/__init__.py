"""Speak Alpaca: market-data streams, the trading stream and the Trading API over REST.

Pure cores: ``wire`` (message shapes to events), ``session`` (the stream protocols: auth,
subscribe, replies), ``orders`` (order bodies, answers to errors and order results). I/O:
``rest`` (the Trading API over HTTP).
"""

__all__: list[str] = []
