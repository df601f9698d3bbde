"""Run the ingestor stage: ``python -m ingestor`` (``--check`` reads its health from Redis)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from common.stage import base_parser, stage_main
from ingestor.shell import run

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the ingestor until SIGTERM/SIGINT, and return the exit code."""
    parser = base_parser(
        "python -m ingestor",
        "Record every venue WebSocket frame (Binance or Alpaca), as received, into Redis Streams.",
    )
    return stage_main("ingestor", run, argv=argv, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
