"""tickpipe: real-time market data and trading over WebSockets and Redis Streams."""

__version__ = "0.1.0"
