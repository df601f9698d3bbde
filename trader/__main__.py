"""Run the trader stage: ``python -m trader`` (``--check`` reports whether one is healthy)."""

from __future__ import annotations

import sys

from common.stage import base_parser, stage_main
from trader.shell import SERVICE, run

__all__ = ["main"]


def main() -> int:
    """Parse arguments and run the trader until SIGTERM or SIGINT; return the exit code."""
    parser = base_parser(
        "python -m trader",
        "tickpipe trader: turn signals into venue orders (at most one order per signal)",
    )
    return stage_main(SERVICE, run, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
