"""Show the pipeline live in a browser: candles, book, orders, positions, health and latency."""

__all__: list[str] = []
