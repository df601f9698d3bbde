"""Run the trader stage: ``python -m tickpipe.trader`` (``--check``: all well, one trading)."""

from __future__ import annotations

import sys

from tickpipe.common.stage import base_parser, stage_main
from tickpipe.trader.shell import SERVICE, run

__all__ = ["main"]


def main() -> int:
    """Parse arguments and run the trader until SIGTERM or SIGINT; return the exit code."""
    parser = base_parser(
        "python -m tickpipe.trader",
        "tickpipe trader: turn signals into venue orders (at most one order per signal)",
    )
    return stage_main(SERVICE, run, parser=parser)


if __name__ == "__main__":
    sys.exit(main())
