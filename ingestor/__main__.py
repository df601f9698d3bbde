"""Run the ingestor stage: ``python -m tickpipe.ingestor`` (``--check``: its health in Redis)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from tickpipe.common.stage import base_parser, stage_main
from tickpipe.ingestor.shell import run

__all__ = ["GC_THRESHOLDS", "main"]

#: The collector's thresholds in the ingestor (``gc.set_threshold``); see :func:`main`.
GC_THRESHOLDS = (10_000, 10, 10)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the ingestor until SIGTERM/SIGINT, and return the exit code."""
    # What the ingestor allocates per frame (the frame, its queue item) is acyclic and freed by
    # reference counting once written: collect the young generation less often, as the
    # processor does (stage_main also freezes what import made).
    gc.set_threshold(*GC_THRESHOLDS)
    parser = base_parser(
        "python -m tickpipe.ingestor",
        "Record every venue WebSocket frame (Binance or Alpaca), as received, into Redis Streams.",
    )
    return stage_main("ingestor", run, argv=argv, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
