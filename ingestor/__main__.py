"""Run the ingestor stage: ``python -m tickpipe.ingestor`` (``--check``: its health in Redis)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tickpipe.common.stage import base_parser, stage_main
from tickpipe.ingestor.shell import run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the ingestor until SIGTERM/SIGINT, and return the exit code."""
    parser = base_parser(
        "python -m tickpipe.ingestor",
        "Record every venue WebSocket frame (Binance or Alpaca), as received, into Redis Streams.",
    )
    return stage_main("ingestor", run, argv=argv, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
