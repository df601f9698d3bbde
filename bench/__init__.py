"""Measure tickpipe's speed: throughput, tick-to-order latency, recovery, memory, and against
cryptofeed on the same feed and Redis (``peer``).

Run ``python -m bench [--quick] [NAMES...]``. Every figure is a ratio or a distribution measured
in the same run as its reference (the bare limit, the in-process floor, the warm-up level).
"""

__all__: list[str] = []
